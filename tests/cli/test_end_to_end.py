"""train -> save -> load -> evaluate -> predict through the CLI, on a tiny random BERT."""

import json

import pytest

from sav_router.core.bundle import read_manifest
from sav_router.cli import main
from sav_router.model.router import Router

from tests.conftest import make_texts, write_jsonl


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base_model, toy_annotations):
    folder = tmp_path_factory.mktemp("e2e")
    bad = folder / "bad.jsonl"
    bad.write_bytes(b'{"text": "", "label": "refund"}\n{"text": "broken \xff bytes", "label": "warranty"}\n')
    teams = folder / "teams.json"
    teams.write_text(json.dumps({"delivery": "logistics", "refund": "finance", "warranty": "after-sales", "account": None}))
    model = folder / "model"
    code = main([
        "train", str(toy_annotations), str(bad), "--output", str(model), "--base-model", tiny_base_model,
        "--epochs", "3", "--learning-rate", "1e-3", "--batch-size", "16", "--teams", str(teams), "--quiet",
    ])
    assert code == 0
    return folder, model


def test_train_writes_a_complete_bundle_and_keeps_bad_rows_aside(trained):
    folder, model = trained
    names = {p.name for p in model.iterdir()}
    assert {"router.json", "config.json", "model.safetensors", "router_head.safetensors", "ood.safetensors", "tokenizer.json"} <= names
    rejects = [json.loads(line) for line in (model / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(1, "empty_text"), (2, "undecodable_bytes")]
    manifest = read_manifest(model)
    assert manifest.labels == ["account", "delivery", "refund", "warranty"]
    assert manifest.policy.teams == {"account": None, "delivery": "logistics", "refund": "finance", "warranty": "after-sales"}
    assert manifest.calibration["target_precision"] == 0.95 and manifest.calibration["confidence"] == 0.95
    assert manifest.training["rows"]["check"] == 80 and len(manifest.training["data_fingerprint"]) == 64
    assert manifest.metrics["check"]["accuracy"] > 0.9  # the toy intents are learnable
    assert (model / "check_report" / "report.json").is_file()


def test_evaluate_writes_report_and_plots_treating_unknown_labels_as_out_of_scope(trained, tmp_path):
    folder, model = trained
    rows = [{"text": t, "label": "delivery"} for t in make_texts("delivery", 30, seed=99)]
    rows += [{"text": f"weather recipe football poem {i} please", "label": "off_topic"} for i in range(10)]
    data = write_jsonl(tmp_path / "eval.jsonl", rows)
    assert main(["evaluate", str(model), str(data), "--output", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["n_examples"] == 40 and report["n_in_scope"] == 30
    assert report["out_of_scope"]["count"] == 10
    for key in ("accuracy", "coverage", "routed_precision", "escalation_rate", "aurc", "ece", "threshold", "per_label"):
        assert key in report
    assert report["coverage"] + report["escalation_rate"] == pytest.approx(1.0)
    assert report["per_label"]["delivery"]["support"] == 30
    assert {"risk_coverage.png", "reliability.png", "confusion_matrix.png", "report.md"} <= {p.name for p in (tmp_path / "report").iterdir()}
    assert "Evaluation report" in (tmp_path / "report" / "report.md").read_text()


def test_predict_writes_one_decision_per_valid_request(trained, tmp_path):
    folder, model = trained
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps({"id": "r1", "text": "refund money back card credited please"}) + "\n"
        + json.dumps({"id": "r2", "text": "   "}) + "\n"
        + "{broken json\n"
        + json.dumps({"id": "r3", "text": "password login locked reset my account"}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "decisions.jsonl"
    assert main(["predict", str(model), str(requests), "--output", str(out)]) == 0
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in decisions] == ["r1", "r2", "r3"]
    assert decisions[1]["decision"] == "escalate" and decisions[1]["reasons"] == ["empty_text"]
    assert decisions[0]["label"] == "refund" and set(decisions[0]["scores"]) == {"account", "delivery", "refund", "warranty"}
    assert decisions[0]["team"] == "finance" or decisions[0]["decision"] == "escalate"
    # account has no team in the routing table: never routed
    assert decisions[2]["label"] == "account" and decisions[2]["decision"] == "escalate" and "no_team_for_label" in decisions[2]["reasons"]
    assert all(d["model_version"] == read_manifest(model).model_version for d in decisions)
    assert (tmp_path / "decisions.rejects.jsonl").read_text().count("\n") == 1


def test_loaded_router_reproduces_the_bundle_scores(trained):
    _, model = trained
    router = Router.load(model)
    texts = make_texts("warranty", 5, seed=3)
    first = router.score(texts).probabilities
    again = Router.load(model).score(texts).probabilities
    assert first.shape == (5, 4)
    assert abs(first - again).max() < 1e-6
    assert abs(first.sum(axis=1) - 1).max() < 1e-5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "missing.jsonl", "--output", "x"], "cannot read"),
        (["predict", ".", "missing.jsonl", "--output", "x"], "no router.json"),
        (["train", "data.txt", "--output", "x"], "unsupported file type"),
    ],
)
def test_bad_usage_exits_2_with_one_line_reason(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sav-router: error:") and message in err and "\n" not in err


def test_training_on_nothing_valid_exits_2(tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text('{"text": "  ", "label": "a"}\n', encoding="utf-8")
    assert main(["train", str(data), "--output", str(tmp_path / "m")]) == 2
    assert "no valid annotated row" in capsys.readouterr().err


def test_rows_tagged_calibrate_are_the_calibration_split_and_never_trained_on(tiny_base_model, tmp_path):
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig
    from tests.conftest import TOPICS

    # GIVEN teach rows, 12 calibrate rows per label and 3 calibrate rows of a label no teach row has
    rows = []
    for label in TOPICS:
        texts = make_texts(label, 52, seed=21)
        rows += [{"text": t, "label": label} for t in texts[:40]]
        rows += [{"text": t, "label": label, "split": "calibrate"} for t in texts[40:]]
    rows += [{"text": f"weather poem {w}", "label": "smalltalk", "split": "calibrate"} for w in ("my", "the", "why")]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    messages = []
    config = TrainConfig(base_model=tiny_base_model, epochs=1, progress=False, learning_rate=1e-3, head_learning_rate=1e-2)
    train_bundle([data], tmp_path / "model", config=config, log=messages.append)
    splits = read_manifest(tmp_path / "model").training["splits"]
    # THEN calibration is exactly the calibrate rows, the unknown label's included (out of scope:
    # routing one would be a misroute); no teach row is carved off for it
    assert splits["calibration"] == 51 and "calibrate" in splits["calibration_source"] and "3 out of scope" in splits["calibration_source"]
    assert splits["train"] + splits["validation"] == 160
    assert any("3 calibrate rows are out of scope" in m for m in messages)
    assert read_manifest(tmp_path / "model").calibration["out_of_scope"] == 3
