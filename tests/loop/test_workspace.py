"""Model registry on the embedded default: register, promote (gated), rollback."""

import json

import pytest

from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import RegistryError, Workspace
from tests.conftest import read_jsonl


def fake_bundle(tmp_path, version, labels=("a", "b")):
    """A manifest-only bundle: the registry reads manifests, never weights."""
    from sav_router.core.bundle import Manifest, write_manifest
    from sav_router.core.policy import RoutingPolicy

    folder = tmp_path / f"src-{version}"
    write_manifest(folder, Manifest(labels=list(labels), policy=RoutingPolicy(threshold=0.9), base_model="x", model_version=version, created_at="2026-01-01T00:00:00+00:00"))
    return folder


def write_gate(workspace, version, passed):
    path = workspace.path("evaluations", version, "comparison", "comparison.json")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gate": {"passed": passed, "reason": "test gate"}}))


def test_register_is_idempotent_and_lists_models(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    assert workspace.register(fake_bundle(tmp_path, "v1")) == "v1"
    assert workspace.register(fake_bundle(tmp_path, "v1")) == "v1"
    assert [entry.version for entry in workspace.models()] == ["v1"]
    assert not workspace.models()[0].in_production


def test_first_promotion_needs_no_gate_later_ones_do(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    for version in ("v1", "v2", "v3"):
        workspace.register(fake_bundle(tmp_path, version))
    workspace.promote("v1")
    assert workspace.production_version() == "v1"
    with pytest.raises(RegistryError, match="no comparison"):
        workspace.promote("v2")
    write_gate(workspace, "v2", passed=False)
    with pytest.raises(RegistryError, match="failed the promotion gate"):
        workspace.promote("v2")
    with pytest.raises(RegistryError, match="needs --reason"):
        workspace.promote("v2", force=True)
    workspace.promote("v2", force=True, reason="hotfix for a new product line")
    write_gate(workspace, "v3", passed=True)
    workspace.promote("v3")
    history = workspace.registry()["history"]
    assert [(e["action"], e["version"], e["previous"], e["forced"]) for e in history] == [
        ("promote", "v1", None, False), ("promote", "v2", "v1", True), ("promote", "v3", "v2", False)
    ]
    assert history[1]["reason"] == "hotfix for a new product line" and history[1]["by"]
    with pytest.raises(RegistryError, match="unknown model version"):
        workspace.promote("v9")


def test_rollback_walks_back_the_promotions(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    for version in ("v1", "v2", "v3"):
        workspace.register(fake_bundle(tmp_path, version))
        write_gate(workspace, version, passed=True)
        workspace.promote(version)
    assert workspace.rollback()["version"] == "v2"
    assert workspace.rollback()["version"] == "v1"
    with pytest.raises(RegistryError, match="no earlier production model"):
        workspace.rollback()
    assert workspace.production_version() == "v1"


def test_jsonl_append_and_read(tmp_path):
    path = tmp_path / "x" / "rows.jsonl"
    assert append_jsonl(path, [{"a": 1}, {"b": "é"}]) == 2
    append_jsonl(path, [{"c": 3}])
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}, {"c": 3}]
