"""Issue 21: serve what was certified, and serve an ONNX bundle without torch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from sav_router.core.bundle import BundleError, read_manifest, write_manifest
from sav_router.model.backends import certified_backend
from sav_router.model.router import Router
from sav_router.serving.runner import UncertifiedBackendError, choose_backend

PROBE = r'''
import json, os, signal, sys, threading, time, urllib.request

bundle, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"


def probe():
    try:
        for _ in range(1200):
            try:
                urllib.request.urlopen(base + "/ping", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        lines = b'{"id": "a", "text": "refund my money back please"}\n{"id": "b", "text": "parcel courier tracking"}\n'
        request = urllib.request.Request(base + "/invocations", data=lines, headers={"Content-Type": "application/jsonlines"})
        answer = urllib.request.urlopen(request, timeout=60).read().decode()
        single = urllib.request.Request(base + "/invocations", data=b'{"text": "password login locked"}', headers={"Content-Type": "application/json"})
        one = json.loads(urllib.request.urlopen(single, timeout=60).read())
        ping = json.loads(urllib.request.urlopen(base + "/ping", timeout=2).read())
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "scipy"))
        result = {"ping": ping, "lines": answer.splitlines(), "one": one, "heavy": heavy}
    except Exception as exc:  # reported, not hidden
        result = {"error": repr(exc)}
    with open(out, "w") as handle:
        json.dump(result, handle)
    os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=probe, daemon=True).start()
from sav_router.cli import main

main(["serve", "--model", bundle, "--port", str(port), "--threads", "1"])
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def certified_bundle(tiny_bundle):
    """`train` with its defaults: certified on the fastest ONNX variant that passed the gate."""
    manifest = read_manifest(tiny_bundle)
    if certified_backend(manifest) == "torch":
        pytest.fail(f"train's default bundle is certified on torch: {manifest.serving.get('certification')}")
    return tiny_bundle


def test_train_certifies_an_onnx_backend_and_records_its_gate(certified_bundle):
    serving = read_manifest(certified_bundle).serving
    chosen = serving["certified_backend"]
    assert chosen in ("onnx", "onnx-int8") and serving["backend"] == chosen
    check = serving["onnx"]["equivalence"][chosen]
    assert check["passed"] and check["examples"] == serving["certification"]["gate_rows"] > 0
    assert 0.0 <= check["decision_agreement"] <= 1.0
    if chosen == "onnx":  # int8 is preferred whenever it passes
        assert not serving["onnx"]["equivalence"]["onnx-int8"]["passed"]
    assert (certified_bundle / serving["certification"]["file"]).is_file() and len(serving["certification"]["sha256"]) == 64
    router = Router.load(certified_bundle, num_threads=1)
    assert router.backend.name == chosen and router.certified


def test_the_serving_process_of_an_onnx_bundle_has_no_torch(certified_bundle, tmp_path):
    """The real `serve` process (JSON and JSON Lines, as Batch Transform sends them) never imports torch or transformers."""
    out = tmp_path / "probe.json"
    completed = subprocess.run([sys.executable, "-c", PROBE, str(certified_bundle), str(free_port()), str(out)],
                               capture_output=True, text=True, timeout=300)
    assert out.is_file(), completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "error" not in result, result
    assert result["heavy"] == [], result["heavy"]
    assert result["ping"]["backend"] == read_manifest(certified_bundle).serving["certified_backend"] and result["ping"]["certified"] is True
    assert [json.loads(line)["id"] for line in result["lines"]] == ["a", "b"]
    assert result["one"]["decision"] in ("route", "escalate")


def test_serve_refuses_a_backend_the_promise_does_not_cover_unless_told(certified_bundle, monkeypatch, caplog):
    from sav_router.cli import main

    assert choose_backend(certified_bundle, None) == certified_backend(read_manifest(certified_bundle))
    with pytest.raises(UncertifiedBackendError, match="do not cover torch"):
        choose_backend(certified_bundle, "torch")
    monkeypatch.setenv("SAV_ROUTER_BACKEND", "torch")
    with pytest.raises(UncertifiedBackendError, match="--uncertified-backend"):
        choose_backend(certified_bundle, None)
    assert main(["serve", "--model", str(certified_bundle), "--port", str(free_port())]) == 2
    with caplog.at_level("WARNING"):
        assert choose_backend(certified_bundle, None, uncertified=True) == "torch"
    assert "do not cover torch" in caplog.text
    monkeypatch.setenv("SAV_ROUTER_UNCERTIFIED_BACKEND", "1")
    assert choose_backend(certified_bundle, None) == "torch"
    assert not Router.load(certified_bundle, backend="torch", num_threads=1).certified


def test_a_changed_certified_file_is_refused(certified_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(certified_bundle, bundle)
    manifest = read_manifest(bundle)
    manifest.serving["certification"]["sha256"] = "0" * 64
    write_manifest(bundle, manifest)
    with pytest.raises(BundleError, match="changed since the bundle was certified"):
        Router.load(bundle)


def test_export_onnx_keeps_a_certified_file(certified_bundle, toy_annotations, tmp_path):
    """Re-exporting never replaces the file a bundle's promise was computed on."""
    import shutil

    from sav_router.cli import main

    bundle = tmp_path / "bundle"
    shutil.copytree(certified_bundle, bundle)
    before = read_manifest(bundle).serving
    assert main(["export-onnx", str(bundle), "--check", str(toy_annotations), "--threads", "1"]) == 0
    after = read_manifest(bundle).serving
    assert after["certified_backend"] == before["certified_backend"] and after["certification"] == before["certification"]
    assert Router.load(bundle, num_threads=1).certified
