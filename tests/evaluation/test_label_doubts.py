"""The evaluation report estimates the label-error rate of the check rows it is computed on (issue 22)."""

import json

from sav_router.data.annotations import load_annotations
from sav_router.evaluation.metrics import evaluate
from sav_router.evaluation.report import label_doubts_line, write_report
from sav_router.model.router import Router


def test_report_json_estimates_the_label_error_rate_of_the_check_rows(tiny_bundle, toy_annotations, tmp_path):
    router = Router.load(tiny_bundle)
    records = [r for r in load_annotations([toy_annotations]).records if r.split == "check"]
    # GIVEN check rows with a few labels planted wrong, and one out-of-scope row (left out of the estimate)
    labels = router.labels
    wrong = {r.id for r in records[:8]}
    records = [type(r)(text=r.text, label=labels[(labels.index(r.label) + 1) % len(labels)] if r.id in wrong else r.label, id=r.id)
               for r in records]
    records += [type(records[0])(text="weather football recipe poem", label="chit_chat", id="oos-1")]
    # WHEN the report is written
    write_report(evaluate(router, records), tmp_path, plots=False)
    report = json.loads((tmp_path / "report.json").read_text())
    # THEN label_doubts counts the in-scope rows, with a rate inside its exact interval
    doubts = report["label_doubts"]
    assert doubts["rows"] == report["n_in_scope"] == len(records) - 1
    assert 0 < doubts["doubts"] <= doubts["rows"] and doubts["rate"] == doubts["doubts"] / doubts["rows"]
    low, high = doubts["interval"]
    assert low <= doubts["rate"] <= high and doubts["confidence"] == 0.95
    assert "never trained on" in doubts["method"]
    # AND the 8 planted errors show (the bundle never trained on these rows: its scores are out of sample here)
    assert doubts["doubts"] >= 4
    # AND report.md says it in one line, with the interval and the promise's error budget
    markdown = (tmp_path / "report.md").read_text()
    line = next(line for line in markdown.splitlines() if line.startswith("Label doubts:"))
    assert f"{doubts['rate']:.1%}" in line and f"[{low:.1%}, {high:.1%}]" in line


def test_the_line_warns_at_half_the_error_budget():
    estimate = {"rows": 100, "doubts": 3, "rate": 0.03, "interval": [0.006, 0.085], "confidence": 0.95}
    assert "half the promise's error budget" in label_doubts_line(estimate, 0.95)  # 3 % >= 2.5 %
    assert "half" not in label_doubts_line(estimate | {"doubts": 1, "rate": 0.01}, 0.95)
    assert label_doubts_line(None, 0.95).startswith("not estimated")
