"""The README's quickstart, on the packaged all-MiniLM-L6-v2: a real fine-tune (one epoch)."""

import json

import pytest

from sav_router.core.bundle import read_manifest
from sav_router.model.network import default_base_model
from sav_router.loop.quickstart import run_quickstart, sample_path

pytestmark = pytest.mark.slow


def test_packaged_sample_data_is_rich_enough():
    rows = [json.loads(line) for line in sample_path("annotations.jsonl").read_text().splitlines()]
    teams = json.loads(sample_path("teams.json").read_text())
    labels = {row["label"] for row in rows}
    assert len(rows) >= 1500 and len(set(teams.values())) >= 8 and labels == set(teams)
    requests = [json.loads(line) for line in sample_path("requests.jsonl").read_text().splitlines()]
    assert sum(r["label"] not in teams for r in requests) >= 10  # off-topic requests with no team


def test_quickstart_fine_tunes_minilm_then_routes_and_escalates(tmp_path, capsys):
    summary = run_quickstart(tmp_path, epochs=1, progress=False, log=lambda message: None)
    manifest = read_manifest(tmp_path / "model")
    assert manifest.base_model == default_base_model()
    history = manifest.training["history"]
    assert history["epochs"] and history["epochs"][0]["train_loss"] > 0  # the encoder really trained
    assert manifest.metrics["check"]["accuracy"] > 0.85
    # routes most requests, escalates the unsure and most off-topic ones, precision near the target
    assert summary["routed"] > 100 and summary["escalated"] > 10
    assert summary["off_topic_escalated"] >= 0.7 * summary["off_topic"]
    assert summary["routed_correct"] / summary["routed"] > 0.88
    out = capsys.readouterr().out
    assert "realized routed precision" in out and "escalations by reason" in out
    assert (tmp_path / "decisions.jsonl").read_text().count("\n") == 200
    # AND the output is a workspace the console opens as it is
    from sav_router.loop.workspace import Workspace

    workspace = Workspace(tmp_path)
    assert workspace.production_version() == summary["model_version"] == manifest.model_version
    assert (workspace.path("models", summary["model_version"], "check_report", "details.json")).is_file()
    queue = [json.loads(line) for line in workspace.path("review", "queue.jsonl").read_text().splitlines()]
    assert sum(not row["audit"] for row in queue) == summary["escalated"] == summary["queued"]["escalation"]
    assert sum(row["audit"] for row in queue) == summary["queued"].get("audit", 0) > 0
    from sav_router.monitoring.traffic import traffic_rows  # the one traffic format (core.traffic)

    logged = list(traffic_rows(workspace.root))
    assert len(logged) == 200 and all(row["text"] for row in logged)
