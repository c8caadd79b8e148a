"""`sav-router serve` as a real process: the contract over HTTP, ports, model discovery, SIGTERM."""

from __future__ import annotations

import json
import signal
import tarfile
import time

import httpx
import pytest

from sav_router.core.bundle import BundleError
from sav_router.serving.runner import choose_backend, resolve_model_dir

from .helpers import free_port, start_process, stop, wait_until_ready, post_lines_in_background, serve_args


def test_serve_answers_the_contract_and_stops_gracefully_on_sigterm(serving_bundle):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # a long batching wait keeps the request in flight while SIGTERM arrives
    process = start_process(serve_args(serving_bundle, port, "--max-wait-ms", "2000"))
    try:
        wait_until_ready(process, base)
        assert httpx.get(f"{base}/execution-parameters").json()["MaxPayloadInMB"] == 6
        lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(["refund money", "login password", "parcel courier"]))
        answer = {}
        client = post_lines_in_background(base, lines, answer, timeout=30)
        time.sleep(0.8)
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        client.join(timeout=30)
        code, output = stop(process)
    finally:
        stop(process)
    assert answer["status"] == 200 and answer["at"] > sent_at
    records = [json.loads(line) for line in answer["text"].splitlines()]
    assert [r["id"] for r in records] == [0, 1, 2] and records[0]["label"] == "refund"
    assert code == 0, output
    assert "Shutting down" in output or "Finished server process" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/ping", timeout=1)


def test_serve_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    process = start_process(["-m", "sav_router.cli", "serve", "--model", str(tmp_path), "--port", str(free_port())])
    code, output = stop(process, timeout=60) if process.wait(timeout=60) is not None else (None, "")
    assert code == 2 and "not a sav-router model bundle" in output


def test_model_archive_is_extracted(serving_bundle, tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in serving_bundle.iterdir():
            tar.add(path, arcname=path.name)
    holder = tmp_path / "opt-ml-model"
    holder.mkdir()
    archive.rename(holder / "model.tar.gz")
    extracted = resolve_model_dir(holder)
    assert (extracted / "router.json").read_text() == (serving_bundle / "router.json").read_text()


def test_model_archive_with_unsafe_paths_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(evil, arcname="../../escape.txt")
    with pytest.raises(tarfile.TarError):
        resolve_model_dir(archive)


def test_default_model_dir_is_opt_ml_model(serving_bundle, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("SAV_ROUTER_OPT_ML", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model"):
        resolve_model_dir(None)
    shutil.copytree(serving_bundle, tmp_path / "model")
    assert resolve_model_dir(None) == tmp_path / "model"


def test_backend_choice_order(serving_bundle, monkeypatch):
    monkeypatch.setenv("SAV_ROUTER_UNCERTIFIED_BACKEND", "1")  # this bundle is certified on torch: serving onnx must be asked for
    assert choose_backend(serving_bundle, None) == "torch"
    monkeypatch.setenv("SAV_ROUTER_BACKEND", "onnx")
    assert choose_backend(serving_bundle, None) == "onnx"
    assert choose_backend(serving_bundle, "torch") == "torch"


def test_broken_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "router.json").write_text("{}")
    with pytest.raises(BundleError):
        resolve_model_dir(tmp_path)


def test_sigterm_answers_a_long_batch_in_json_and_exits_within_the_grace_period(serving_bundle):
    # Issue 18, finding 5: a long JSON Lines batch in flight at SIGTERM got a plain-text 500 at uvicorn's timeout,
    # and its orphaned work ran on (exit 57 s after the signal).
    grace = 4.0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_process(serve_args(serving_bundle, port, "--graceful-timeout", str(grace), "--max-batch-size", "1", "--threads", "1"))
    try:
        wait_until_ready(process, base)
        # GIVEN a batch far longer than the grace period (one text per model call)
        lines = "".join(json.dumps({"id": i, "text": f"where is my parcel courier {i}"}) + "\n" for i in range(30_000))
        answer = {}
        client = post_lines_in_background(base, lines, answer, timeout=60)
        time.sleep(1.5)
        # WHEN SIGTERM arrives while it is computed
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=grace + 10)
        exited_after = time.monotonic() - sent_at
        client.join(timeout=30)
        _, output = stop(process)
    finally:
        stop(process)
    print(f"SIGTERM with a 30,000-line batch in flight: answered {answer.get('status')} after {answer['at'] - sent_at:.1f} s, exit after {exited_after:.1f} s")
    # THEN it is answered in JSON (a JSON 503 shutting_down, since it cannot finish in time), and the process exits within the grace period
    assert answer["status"] in (200, 503)
    if answer["status"] == 503:
        assert json.loads(answer["body"])["code"] == "shutting_down"
    assert exited_after < grace and code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
