"""The local improvement loop through the CLI: register, route with an observer, compare, promote, select."""

import json

import pytest

from sav_router.core.bundle import read_manifest
from sav_router.cli import main
from tests.conftest import make_texts, train_toy_bundle, write_jsonl


@pytest.fixture(scope="module")
def loop(tmp_path_factory, tiny_base_model, toy_annotations, tiny_bundle):
    root = tmp_path_factory.mktemp("loop")
    candidate = train_toy_bundle(tiny_base_model, toy_annotations, root / "candidate", epochs=3, seed=7)
    workspace = root / "ws"
    for bundle in (tiny_bundle, candidate):
        assert main(["register", str(bundle), "--workspace", str(workspace)]) == 0
    production_version = read_manifest(tiny_bundle).model_version
    candidate_version = read_manifest(candidate).model_version
    assert production_version != candidate_version
    assert main(["promote", production_version, "--workspace", str(workspace)]) == 0
    requests = [{"id": f"r{i}", "text": t} for i, t in enumerate(make_texts("refund", 12, seed=50) + make_texts("account", 12, seed=50))]
    requests.append({"id": "blank", "text": " "})
    labeled = [{"id": f"l{i}", "text": t, "label": label} for label in ("delivery", "refund", "warranty", "account") for i, t in enumerate(make_texts(label, 20, seed=77))]
    return {
        "root": root,
        "workspace": workspace,
        "production": production_version,
        "candidate": candidate_version,
        "requests": write_jsonl(root / "requests.jsonl", requests),
        "labeled": write_jsonl(root / "labeled.jsonl", [dict(row, id=f"{row['label']}-{row['id']}") for row in labeled]),
    }


def test_route_logs_both_models_and_queues_escalations_and_audits(loop, capsys):
    ws = str(loop["workspace"])
    assert main(["route", str(loop["requests"]), "--observer", loop["candidate"], "--audit-share", "1.0", "--workspace", ws]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 25 and all(row["model_version"] == loop["production"] for row in out)
    def logged(kind):  # the routing Lambda's format: traffic/<kind>/dt=DAY/NAME, one file per batch
        return [json.loads(line) for path in sorted((loop["workspace"] / "traffic" / kind).glob("dt=*/*.jsonl")) for line in path.read_text().splitlines()]

    requests, decisions, observed = logged("requests"), logged("decisions"), logged("observer")
    assert len(decisions) == 25 and [row["id"] for row in requests] == [row["id"] for row in decisions]
    assert all(row["model_version"] == loop["candidate"] for row in observed)
    assert decisions == out  # the observer never changes what production decided
    queue = [json.loads(line) for line in (loop["workspace"] / "review" / "queue.jsonl").read_text().splitlines()]
    # audit share 1.0: every request is queued, escalations as such, routed ones as audit samples
    assert len(queue) == 25
    assert {row["id"] for row in queue if row["audit"]} == {row["id"] for row in out if row["decision"] == "route"}
    assert next(row for row in queue if row["id"] == "blank")["reasons"] == ["empty_text"]


def test_compare_writes_the_report_and_the_gate_drives_promotion(loop, capsys):
    ws = str(loop["workspace"])
    output = loop["root"] / "comparison"
    assert main(["compare", "--production", loop["production"], "--candidate", loop["candidate"], str(loop["labeled"]),
                 "--output", str(output), "--workspace", ws, "--min-labeled", "20", "--coverage-tolerance", "1.0", "--precision-tolerance", "1.0"]) == 0
    report = json.loads((output / "comparison.json").read_text())
    assert report["n_compared"] == 80 and report["labeled"]["n"] == 80
    assert report["gate"]["passed"] is True
    assert set(report["labeled"]["difference"]) >= {"routed_precision_ci", "coverage_ci"}
    assert "Verdict: PASS" in (output / "comparison.md").read_text()
    assert (loop["workspace"] / "evaluations" / loop["candidate"] / "comparison" / "comparison.json").is_file()
    assert main(["promote", loop["candidate"], "--workspace", ws]) == 0
    assert main(["models", "--workspace", ws]) == 0
    listing = capsys.readouterr().out
    assert f"* {loop['candidate']}" in listing
    assert main(["rollback", "--workspace", ws]) == 0
    assert f"rolled back to {loop['production']}" in capsys.readouterr().out


def test_a_failed_gate_blocks_promotion(loop, capsys):
    ws = str(loop["workspace"])
    output = loop["root"] / "strict"
    # an impossible gate: the candidate must route more than everything production routes plus 100%
    assert main(["compare", "--production", loop["production"], "--candidate", loop["candidate"], str(loop["labeled"]),
                 "--output", str(output), "--workspace", ws, "--min-labeled", "500"]) == 0
    capsys.readouterr()
    assert main(["promote", loop["candidate"], "--workspace", ws]) == 2
    assert "failed the promotion gate" in capsys.readouterr().err


def test_select_ranks_a_diverse_batch_from_the_pool(loop, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(make_texts("delivery", 20, seed=5) + make_texts("warranty", 20, seed=5))] + [{"id": "novel", "text": "weather recipe football poem poem"}])
    out = tmp_path / "selected.jsonl"
    assert main(["select", "--model", loop["production"], "--pool", str(pool), "-k", "6", "--candidate", loop["candidate"], "--output", str(out), "--workspace", str(loop["workspace"])]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and len({row["id"] for row in rows}) == 6
    assert set(rows[0]["signals"]) == {"uncertainty", "novelty", "disagreement"}
    assert rows[0]["priority"] == max(row["priority"] for row in rows)  # the greedy pass starts from the top priority
    assert all(row["top_k"][0]["label"] == row["label"] for row in rows)


def test_select_sets_a_random_calibration_share_aside_for_import_as_calibrate(loop, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(make_texts("delivery", 30, seed=8) + make_texts("account", 30, seed=8))])
    out = tmp_path / "batch.jsonl"
    # WHEN 10 requests are asked for with a 30 % calibration share
    argv = ["select", "--model", loop["production"], "--pool", str(pool), "-k", "10", "--calibration-share", "0.3", "--output", str(out), "--workspace", str(loop["workspace"])]
    assert main(argv) == 0
    selected = [json.loads(line) for line in out.read_text().splitlines()]
    drawn = [json.loads(line) for line in (tmp_path / "batch.calibrate.jsonl").read_text().splitlines()]
    # THEN 7 are chosen by priority and 3 drawn at random, never the same request twice
    assert len(selected) == 7 and len(drawn) == 3
    assert not {row["id"] for row in selected} & {row["id"] for row in drawn}
    assert all("priority" not in row for row in drawn)
    # AND the draw is reproducible (seeded)
    main(argv)
    assert [json.loads(line)["id"] for line in (tmp_path / "batch.calibrate.jsonl").read_text().splitlines()] == [row["id"] for row in drawn]
    # AND the random rows import as a calibrate drop
    labeled = write_jsonl(tmp_path / "answers.jsonl", [dict(row, label="delivery") for row in drawn])
    assert main(["import", str(labeled), "--as", "calibrate", "--workspace", str(loop["workspace"])]) == 0
    drops = sorted((loop["workspace"] / "annotations").glob("*-calibrate.jsonl"))
    assert drops and {json.loads(line)["split"] for line in drops[-1].read_text().splitlines()} == {"calibrate"}


def test_route_reads_stdin_and_leaves_no_copy_of_the_requests(loop, capsys, monkeypatch, tmp_path):
    import io
    import sys
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(loop["requests"].read_bytes())))
    assert main(["route", "--workspace", str(loop["workspace"]), "--audit-share", "0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 25
    assert list(spool.iterdir()) == []  # request text is not left behind in a temp file
