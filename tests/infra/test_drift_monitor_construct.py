"""The drift monitor construct: scheduled function, least-privilege reads, alarm to the topic, cdk-nag clean."""

from __future__ import annotations

import json

import aws_env
from template_helpers import policy_statements, resources


def build(outdir, nag: bool):
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_sns as sns

    from infra.drift_monitor import DriftMonitor

    app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": []})
    if nag:
        from cdk_nag import AwsSolutionsChecks, ServerlessChecks

        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    stack = cdk.Stack(app, "DriftTest", env=cdk.Environment(account=aws_env.ACCOUNT, region=aws_env.REGION))
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    bucket = s3.Bucket.from_bucket_name(stack, "Bucket", "sav-router-artifacts")
    topic = sns.Topic(stack, "Topic", master_key=key, enforce_ssl=True)
    DriftMonitor(stack, "DriftMonitor", bucket=bucket, key=key, topic=topic, log_retention_days=90)
    return app, stack


def test_function_schedule_and_alarm(tmp_path):
    from aws_cdk.assertions import Template

    _, stack = build(tmp_path, nag=False)
    raw = Template.from_stack(stack).to_json()
    function = next(r for r in resources(raw, "AWS::Lambda::Function").values() if "drift" in json.dumps(r["Properties"].get("Description", "")))
    assert function["Properties"]["Environment"]["Variables"]["DRIFT_ALPHA"] == "0.01"
    assert [r["Properties"]["ScheduleExpression"] for r in resources(raw, "AWS::Events::Rule").values()] == ["rate(1 hour)"]
    alarm = next(iter(resources(raw, "AWS::CloudWatch::Alarm").values()))["Properties"]
    assert alarm["MetricName"] == "DriftAlarm" and alarm["AlarmActions"] and "annotate a new random sample" in alarm["AlarmDescription"]
    actions = {a for s in policy_statements(raw) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "s3:PutObject" not in actions and "cloudwatch:PutMetricData" in actions
    rendered = json.dumps(policy_statements(raw))
    assert "traffic/decisions/*" in rendered and "traffic/requests" not in rendered  # never the request texts


def test_cdk_nag_finds_nothing_unacknowledged(tmp_path):
    app, _ = build(tmp_path, nag=True)
    app.synth()  # an unacknowledged finding raises
    report = json.loads((tmp_path / "validation-report.json").read_text()) if (tmp_path / "validation-report.json").exists() else {"pluginReports": []}
    assert report["pluginReports"] == []
