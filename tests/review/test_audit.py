"""Audit sampling's estimate: live routed precision with an exact Clopper-Pearson interval."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import pytest

from sav_router.cli.review import add_audit_parser
from sav_router.core.stats import clopper_pearson, regularized_beta
from sav_router.review.audit import (
    audit_estimate,
    estimate_precision,
    s3_audit_rows,
)
from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import Workspace
from tests.conftest import REPO


def audit_row(request_id, label, routed, version="v1", source="audit"):
    return {"id": request_id, "text": f"text {request_id}", "label": label, "split": "check", "source": source, "model_label": routed, "model_version": version}


def test_interval_matches_closed_forms_at_the_edges():
    # All confirmed: lower bound (alpha/2)^(1/n); none confirmed: upper bound 1 - (alpha/2)^(1/n).
    for n in (1, 7, 50, 400):
        assert clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n), abs=1e-9), 1.0)
        assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n), abs=1e-9))


def test_interval_is_symmetric_and_contains_the_estimate():
    for k, n in ((3, 10), (95, 100), (512, 1000)):
        low, high = clopper_pearson(k, n)
        mirror_low, mirror_high = clopper_pearson(n - k, n)
        assert low < k / n < high
        assert low == pytest.approx(1 - mirror_high, abs=1e-9) and high == pytest.approx(1 - mirror_low, abs=1e-9)
    # a wider confidence level gives a wider interval
    assert clopper_pearson(90, 100, 0.99)[0] < clopper_pearson(90, 100, 0.95)[0]


def test_interval_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((1, 3), (17, 20), (95, 100), (9990, 10000)):
        low, high = clopper_pearson(k, n)
        assert low == pytest.approx(stats.beta.ppf(0.025, k, n - k + 1), abs=1e-9)
        assert high == pytest.approx(stats.beta.ppf(0.975, k + 1, n - k), abs=1e-9)


def test_regularized_beta_known_values():
    assert regularized_beta(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert regularized_beta(2, 1, 0.5) == pytest.approx(0.25)  # x^2
    assert regularized_beta(0.5, 0.5, 0.25) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.25)))  # arcsine law


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)


def test_workspace_estimate_counts_the_latest_audit_answer_per_request(tmp_path):
    # GIVEN audit answers across two drops (a1 re-answered later), a teach answer and an import
    workspace = Workspace(tmp_path / "ws").ensure()
    append_jsonl(workspace.path("annotations", "20260101T000000000000Z-audit-check.jsonl"), [
        audit_row("a1", "refund", "delivery"),
        audit_row("a2", "refund", "refund"),
        audit_row("a3", "account", "account", version="v2"),
    ])
    append_jsonl(workspace.path("annotations", "20260102T000000000000Z-audit-check.jsonl"), [audit_row("a1", "delivery", "delivery")])
    append_jsonl(workspace.path("annotations", "20260102T000000000000Z-review-teach.jsonl"), [audit_row("e1", "refund", "delivery", source="review")])
    append_jsonl(workspace.path("annotations", "20260102T000000000000Z-import-teach.jsonl"), [{"id": "i1", "text": "t", "label": "refund", "split": "teach"}])
    # WHEN the estimate is made
    report = audit_estimate(workspace)
    # THEN only audit answers count, each request once, with an exact interval, per model version too
    assert (report["audited"], report["correct"], report["precision"]) == (3, 3, 1.0)
    assert report["interval"] == [pytest.approx(0.025 ** (1 / 3), abs=1e-4), 1.0]
    assert report["by_model_version"]["v1"]["audited"] == 2 and report["by_model_version"]["v2"]["audited"] == 1


def test_no_audit_answer_gives_no_estimate(tmp_path):
    report = audit_estimate(Workspace(tmp_path / "empty"))
    assert report["audited"] == 0 and report["precision"] is None and report["interval"] is None


def test_estimate_flags_misroutes():
    report = estimate_precision([audit_row(f"a{i}", "refund", "refund" if i < 8 else "delivery") for i in range(10)])
    assert (report["correct"], report["audited"], report["precision"]) == (8, 10, 0.8)
    low, high = report["interval"]
    assert 0.44 < low < 0.45 and 0.97 < high < 0.98  # Clopper-Pearson 95% for 8/10: [0.444, 0.975]


def test_audit_answers_written_by_sqs_reviewers_are_read_from_s3(monkeypatch):
    moto = pytest.importorskip("moto")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with moto.mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        s3.put_object(Bucket="artifacts", Key="annotations/review/audit-check-aaa.jsonl", Body=json.dumps(audit_row("a1", "refund", "refund")) + "\n")
        s3.put_object(Bucket="artifacts", Key="annotations/review/review-teach-bbb.jsonl", Body=json.dumps(audit_row("e1", "x", "y", source="review")) + "\n")
        rows = s3_audit_rows(s3, "artifacts")
    assert [row["id"] for row in rows] == ["a1"]


def test_audit_command_prints_the_estimate(tmp_path, capsys):
    workspace = Workspace(tmp_path / "ws").ensure()
    append_jsonl(workspace.path("annotations", "20260101T000000000000Z-audit-check.jsonl"), [audit_row("a1", "refund", "refund"), audit_row("a2", "x", "refund")])
    parser = argparse.ArgumentParser(prog="sav-router")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "--workspace", str(workspace.root)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "live routed precision (95% Clopper-Pearson): 0.500 [0.013, 0.987] (1/2 routed labels confirmed)" in out
    args = parser.parse_args(["audit", "--workspace", str(workspace.root), "--json"])
    args.func(args)
    assert json.loads(capsys.readouterr().out)["audited"] == 2


def test_review_and_audit_modules_import_no_numpy():
    # The audit estimate and the review session run where numpy may not be installed.
    code = "import sys, sav_router.review.audit, sav_router.review.session, sav_router.review.queue, sav_router.loop.importing; print(sorted(m for m in ('numpy', 'scipy', 'torch', 'boto3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
