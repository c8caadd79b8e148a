"""The drift monitor Lambda against moto: logged decisions in S3 -> CloudWatch metrics."""

import json
from datetime import datetime, timezone

import boto3
from moto import mock_aws

from lambda_harness import BUCKET, load_handler_module

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
REFERENCE = {"n": 400, "flagged": 4, "flagged_share": 0.01,
             "confidence": [round(0.5 + i / 800, 6) for i in range(400)], "novelty": [round(i / 1000, 6) for i in range(400)]}


def decisions(n, *, novel):
    rows = []
    for i in range(n):
        spread = (i * 400) // n  # covers the reference's range whatever n is
        novelty = 0.9 if novel and i % 2 else spread / 1000
        rows.append({"id": f"r{i}", "decision": "route", "confidence": 0.5 + spread / 800, "ood_score": novelty,
                     "reasons": ["out_of_distribution"] if novelty > 0.8 else [], "scores": {"a": 1.0}, "model_version": "v7"})
    return rows


def setup(s3, rows):
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    s3.put_object(Bucket=BUCKET, Key="models/manifests/v7.json", Body=json.dumps({"calibration": {"reference": REFERENCE}}))
    body = "\n".join(json.dumps(r) for r in rows) + "\n{torn"
    s3.put_object(Bucket=BUCKET, Key="traffic/decisions/dt=2026-01-05/120000-a.jsonl", Body=body)


def metric(cloudwatch, name):
    stats = cloudwatch.get_metric_statistics(Namespace="SavRouter", MetricName=name, Dimensions=[{"Name": "service", "Value": "monitor"}],
                                             StartTime=datetime(2026, 1, 5, tzinfo=timezone.utc), EndTime=datetime(2026, 1, 6, tzinfo=timezone.utc),
                                             Period=86400, Statistics=["Maximum"])
    return [p["Maximum"] for p in stats["Datapoints"]]


@mock_aws
def test_in_distribution_traffic_publishes_no_alarm_and_novel_traffic_does():
    from sav_router.aws.drift import run_drift_check

    s3, cloudwatch = boto3.client("s3"), boto3.client("cloudwatch")
    setup(s3, decisions(400, novel=False))
    quiet = run_drift_check(s3, cloudwatch, BUCKET, now=NOW)
    assert quiet["n"] == 400 and not quiet["alarm"] and quiet["model_version"] == "v7"
    assert metric(cloudwatch, "DriftAlarm") == [0.0] and metric(cloudwatch, "DriftRequests") == [400.0]
    s3.put_object(Bucket=BUCKET, Key="traffic/decisions/dt=2026-01-05/130000-b.jsonl", Body="\n".join(json.dumps(r) for r in decisions(400, novel=True)))
    loud = run_drift_check(s3, cloudwatch, BUCKET, now=NOW)
    assert loud["alarm"] and loud["flagged_share"] > 0.2
    assert 1.0 in metric(cloudwatch, "DriftAlarm")


@mock_aws
def test_handler_logs_no_text_and_returns_the_verdict(context, monkeypatch, capsys):
    s3 = boto3.client("s3")
    setup(s3, decisions(50, novel=False))
    monkeypatch.setenv("ARTIFACTS_BUCKET", BUCKET)
    monkeypatch.setenv("DRIFT_DAYS", "400")  # the fixed test day is within reach of today
    result = load_handler_module("drift_monitor").handler({}, context)
    assert result["n"] == 50 and result["alarm"] is False
    logged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert logged["n"] == 50 and "text" not in logged
