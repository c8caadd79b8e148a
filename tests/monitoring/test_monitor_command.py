"""`sav-router monitor` and `sav-router discover` on a workspace."""

import json

import pytest

from sav_router.data.labelstudio import config_path
from sav_router.cli import main
from sav_router.core.bundle import read_manifest
from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import Workspace
from tests.conftest import read_jsonl


@pytest.fixture
def workspace(tmp_path, tiny_bundle):
    ws = tmp_path / "ws"
    assert main(["register", str(tiny_bundle), "--workspace", str(ws)]) == 0
    version = read_manifest(tiny_bundle).model_version
    assert main(["promote", version, "--workspace", str(ws)]) == 0
    return Workspace(ws), version, read_manifest(tiny_bundle).calibration["reference"]


def log_traffic(ws, version, decisions):
    """One logged batch in the traffic format `route` and the Lambda write (core.traffic, core.layout)."""
    from datetime import datetime, timezone

    from sav_router.core import layout
    from sav_router.core.traffic import traffic_batch

    when = datetime(2026, 1, 5, tzinfo=timezone.utc)
    name = f"{len(list((ws.root / layout.TRAFFIC_DECISIONS).rglob('*.jsonl'))):06d}.jsonl"  # later batches sort after
    requests, rows = traffic_batch([(f"t{i}", f"request {i}") for i in range(len(decisions))],
                                   [d | {"model_version": version, "id": f"t{i}"} for i, d in enumerate(decisions)], received_at=when)
    requests_key, decisions_key = layout.traffic_keys(when, name)
    append_jsonl(ws.root / requests_key, requests)
    append_jsonl(ws.root / decisions_key, rows)


def like_calibration(reference, n, *, novel=False):
    conf, nov = reference["confidence"], reference["novelty"]
    out = []
    for i in range(n):
        c, o = conf[(i * 7) % len(conf)], nov[(i * 11) % len(nov)]
        if novel:
            o = max(nov) * 3
        out.append({"decision": "route", "confidence": c, "ood_score": o, "scores": {}, "reasons": ["out_of_distribution"] if novel else []})
    return out


def test_monitor_is_quiet_on_traffic_like_the_calibration_sample_and_fires_on_novel_traffic(workspace, capsys):
    ws, version, reference = workspace
    log_traffic(ws, version, like_calibration(reference, 120))
    assert main(["monitor", "--workspace", str(ws.root), "--exit-code"]) == 0
    assert "no drift detected" in capsys.readouterr().out
    # WHEN a burst of novel traffic arrives
    log_traffic(ws, version, like_calibration(reference, 80, novel=True))
    code = main(["monitor", "--workspace", str(ws.root), "--window", "100", "--exit-code", "--json"])
    report = json.loads(capsys.readouterr().out)
    # THEN the alarm fires, with the remedy named
    assert code == 3 and report["alarm"] and report["n"] == 100
    assert "annotate a new random sample" in report["remedy"]


def test_discover_clusters_novel_escalations_and_a_cluster_is_accepted_as_a_new_label(workspace, capsys, tmp_path):
    ws, version, _ = workspace
    texts = ["weather poem my", "poem weather the", "weather poem please", "football recipe i", "recipe football why", "football recipe need"]
    items = [{"id": f"q{i}", "text": t, "decision": "escalate", "reasons": ["out_of_distribution"], "model_version": version} for i, t in enumerate(texts)]
    append_jsonl(ws.path("review", "queue.jsonl"), items + [{"id": "x", "text": "refund money back", "reasons": ["low_confidence"]}])
    tasks = tmp_path / "clusters.json"
    assert main(["discover", "--workspace", str(ws.root), "--min-size", "1", "--distance", "1.5", "--format", "label-studio", "--output", str(tasks)]) == 0
    out = capsys.readouterr().out
    assert "6 novel requests" in out and "c1:" in out
    exported = json.loads(tasks.read_text())
    assert {t["data"]["request_id"] for t in exported} == {f"q{i}" for i in range(6)} and all("cluster" in t["data"] for t in exported)
    assert "out_of_scope" in config_path(tasks).read_text()  # the one name (data.labelstudio)
    # WHEN a reviewer accepts the first cluster as a new label
    assert main(["discover", "--workspace", str(ws.root), "--accept", "c1", "--label", "leisure_questions"]) == 0
    drops = list(ws.path("annotations").glob("*-discover-teach.jsonl"))
    rows = read_jsonl(drops[0])
    assert rows and {r["label"] for r in rows} == {"leisure_questions"} and {r["split"] for r in rows} == {"teach"}
    assert main(["discover", "--workspace", str(ws.root), "--accept", "c99", "--label", "x"]) == 2
