"""Issue 11: crafted bundles stay inside the workspace, the registry survives concurrent writers and corruption."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from sav_router.core.bundle import BundleError, Manifest, write_manifest
from sav_router.core.policy import RoutingPolicy
from sav_router.loop.workspace import RegistryError, Workspace


def bundle(tmp_path, version, **manifest_fields):
    folder = tmp_path / f"src-{abs(hash(version))}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(labels=["a", "b"], policy=RoutingPolicy(threshold=0.9), base_model="x", model_version="placeholder", created_at="2026-01-01T00:00:00+00:00", **manifest_fields)
    write_manifest(folder, manifest)
    data = json.loads((folder / "router.json").read_text())
    data["model_version"] = version  # as a crafted file would say, not as the dataclass would check
    (folder / "router.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("version", ["../../escaped", "/tmp/absolute", "..", "a/b", "", ".hidden", "v1\n", "v" * 200])
def test_a_model_version_that_is_not_a_plain_name_is_refused(tmp_path, version):
    # GIVEN a crafted router.json whose model_version would become a path outside models/
    workspace = Workspace(tmp_path / "ws")
    # WHEN it is registered THEN it is refused, and nothing is written outside models/
    with pytest.raises(BundleError, match="model version"):
        workspace.register(bundle(tmp_path, version))
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "ws" / "escaped").exists()
    with pytest.raises(RegistryError):
        workspace.promote(version)


def test_register_refuses_a_bundle_with_a_symbolic_link(tmp_path):
    # GIVEN a bundle with a link to a private file
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    folder = bundle(tmp_path, "v1")
    os.symlink(secret, folder / "tokenizer.json")
    workspace = Workspace(tmp_path / "ws")
    # WHEN registered THEN refused, naming the link, and no copy of the target anywhere in the workspace
    with pytest.raises(BundleError, match="tokenizer.json"):
        workspace.register(folder)
    copied = [p for p in (tmp_path / "ws").rglob("*") if p.is_file() and "PRIVATE KEY" in p.read_text(errors="ignore")]
    assert copied == [] and workspace.models() == []


@pytest.mark.parametrize("entry", ["/etc/passwd", "../other/ood.safetensors", "ood/../../x"])
def test_a_manifest_file_entry_outside_the_bundle_is_refused(tmp_path, entry):
    folder = bundle(tmp_path, "v1", ood={"file": entry, "threshold": 1.0, "method": "mahalanobis"})
    with pytest.raises(BundleError, match="bundle file"):
        Workspace(tmp_path / "ws").register(folder)


def _writer(root: str, action: str, n: int, results) -> None:
    workspace = Workspace(root)
    ok = 0
    for i in range(n):
        try:
            if action == "promote":
                workspace.promote(f"v{i % 3 + 1}", force=True, reason="race")
            else:
                workspace.rollback(reason="race")
            ok += 1
        except RegistryError:
            pass  # already in production / nothing to roll back to: refused, not lost
    results.put((action, ok))


def test_two_processes_promoting_and_rolling_back_lose_no_history(tmp_path):
    # GIVEN a workspace with three versions, one in production
    workspace = Workspace(tmp_path / "ws")
    for version in ("v1", "v2", "v3"):
        folder = bundle(tmp_path, version)
        workspace.register(folder)
    workspace.promote("v1")
    # WHEN one process promotes and another rolls back, at the same time, 150 times each
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_writer, args=(str(workspace.root), action, 150, results)) for action in ("promote", "rollback")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    counts = dict(results.get(timeout=5) for _ in workers)
    # THEN every operation reported ok is in the history, and each entry's `previous` is the production before it
    history = workspace.registry()["history"]
    assert len(history) == 1 + counts["promote"] + counts["rollback"]
    assert counts["promote"] > 0 and counts["rollback"] > 0
    broken = [i for i in range(1, len(history)) if history[i]["previous"] != history[i - 1]["version"]]
    assert broken == []
    assert workspace.production_version() == history[-1]["version"]
    print(f"two processes: {counts} ok, {len(history)} history entries, {len(broken)} broken links")


@pytest.mark.parametrize(
    "content",
    ['{"production": 5, "history": []}', '[]', '{"production": "v1", "history": {}}', '{"production": "v1", "history": [1]}',
     '{"production": null, "history": [{"action": "promote", "version": "../x"}]}', '{"production": "v1"', "\x00\xff", "[" * 100_000],
)
def test_a_corrupt_registry_is_an_error_naming_the_file(tmp_path, content):
    workspace = Workspace(tmp_path / "ws")
    workspace.register(bundle(tmp_path, "v1"))
    (workspace.root / "registry.json").write_text(content, encoding="utf-8", errors="surrogateescape")
    for operation in (workspace.production_version, lambda: workspace.promote("v1"), workspace.rollback, workspace.models):
        with pytest.raises(RegistryError, match="registry.json"):
            operation()


def test_a_version_folder_that_links_out_of_models_is_not_served(tmp_path):
    workspace = Workspace(tmp_path / "ws").ensure()
    elsewhere = bundle(tmp_path, "v9")
    (workspace.root / "models" / "v9").symlink_to(elsewhere, target_is_directory=True)
    assert workspace.models() == []
    with pytest.raises(RegistryError, match="outside"):
        workspace.promote("v9")
