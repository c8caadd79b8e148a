"""details.json: the curves and example requests the console draws, consistent with report.json."""

import json

from sav_router.data.annotations import load_annotations
from sav_router.evaluation.metrics import evaluate
from sav_router.evaluation.report import write_report
from sav_router.model.router import Router


def test_details_match_the_report(tiny_bundle, toy_annotations, tmp_path):
    router = Router.load(tiny_bundle)
    records = [r for r in load_annotations([toy_annotations]).records if r.split == "check"]
    records += [type(records[0])(text="weather football recipe poem", label="chit_chat", id="oos-1")]  # out of scope
    write_report(evaluate(router, records), tmp_path, plots=False)
    report = json.loads((tmp_path / "report.json").read_text())
    details = json.loads((tmp_path / "details.json").read_text())
    matrix = details["confusion"]["matrix"]
    assert details["confusion"]["labels"] == router.labels and sum(map(sum, matrix)) == report["n_in_scope"]
    assert sum(matrix[i][i] for i in range(len(matrix))) / report["n_in_scope"] == report["accuracy"]
    rc = details["risk_coverage"]
    assert len(rc["coverage"]) == len(rc["risk"]) and rc["coverage"][-1] == 1.0 and rc["aurc"] == report["aurc"]
    assert sum(b["count"] for b in details["reliability"]["after_temperature"]) == report["n_in_scope"]
    examples = details["examples"]
    routed_wrong = report["routed"] - round(report["routed_precision"] * report["routed"]) if report["routed"] else 0
    assert examples["n_misroutes"] == routed_wrong
    assert examples["n_escalations"] == report["n_examples"] - report["routed"]
    assert all(e["reasons"] for e in examples["escalations"])
    pairs = sum(c["count"] for c in examples["top_confusions"])
    assert pairs <= report["n_in_scope"] - sum(matrix[i][i] for i in range(len(matrix)))
