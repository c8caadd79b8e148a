"""`python app.py` on a machine without AWS credentials: synthesizes, passes cdk-nag, passes cfn-lint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import aws_env
from template_helpers import REPO


@pytest.fixture(scope="module")
def app_output(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("app-cdk.out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no credentials at all
    env.update(CDK_OUTDIR=str(outdir), CDK_CONTEXT_JSON=json.dumps({"aws:cdk:bundling-stacks": []}), SAV_ROUTER_IMAGE_URI=aws_env.IMAGE_URI,
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_DISABLE_CLI_TELEMETRY="true")
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    return result, outdir


def test_app_synthesizes_offline_with_zero_unacknowledged_nag_findings(app_output):
    # GIVEN / WHEN `python app.py` (AwsSolutions + Serverless packs as validation plugins)
    result, outdir = app_output
    # THEN it succeeds (any unacknowledged finding fails synthesis and writes a validation report)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []
    assert sorted(p.name for p in outdir.glob("*.template.json")) == [
        "SavRouterFoundation.template.json", "SavRouterOperations.template.json", "SavRouterPipeline.template.json", "SavRouterServing.template.json"]


def test_every_acknowledgement_carries_a_specific_reason(app_output):
    _, outdir = app_output
    acknowledged: dict[str, str] = {}
    for metadata in outdir.glob("*.metadata.json"):
        for path, entries in json.loads(metadata.read_text()).items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    acknowledged.update({f"{path} {rule}": reason for rule, reason in entry["data"].items()})
    rules = {key.split(" ", 1)[1].split("::", 1)[1].split("[", 1)[0] for key in acknowledged}
    # only these rule families are acknowledged, each finding with its own written reason
    assert rules == {"AwsSolutions-IAM4", "AwsSolutions-IAM5", "AwsSolutions-SQS3", "Serverless-LambdaDLQ", "Serverless-LambdaEventSourceMappingDestination", "Serverless-SQSRedrivePolicy"}
    assert all(len(reason) >= 40 for reason in acknowledged.values()), acknowledged


def test_cfn_lint_finds_no_error_or_warning_in_any_template(app_output):
    _, outdir = app_output
    templates = sorted(str(p) for p in outdir.glob("*.template.json"))
    # W3005 (redundant DependsOn) is emitted by CDK itself
    result = subprocess.run([sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", "--regions", aws_env.REGION, "--ignore-checks", "W3005", "--", *templates],
                            capture_output=True, text=True, timeout=120)
    assert len(templates) == 4
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("change, message", [
    ({"training": {"instanceCount": "2"}}, "training.instanceCount: expected int, got str '2'"),
    ({"alarmMail": "ops@example.com"}, "unknown configuration keys ['alarmMail']"),
])
def test_a_wrong_type_or_unknown_key_in_the_context_fails_synthesis_naming_the_key(tmp_path, change, message):
    config = {**json.loads((REPO / "cdk.json").read_text())["context"]["sav-router"], **change}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps({"sav-router": config}), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1
    # one line naming the key, not a traceback
    assert result.stderr.strip().splitlines()[-1].startswith(f"cdk.json context 'sav-router': {message}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))
