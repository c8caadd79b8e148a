"""Issue 19 item 9: a run that failed after the gate consumed its pending annotations is re-run with one command.

The README's command (Teardown and operations: "Re-run a failed pipeline run"):

    aws stepfunctions start-execution --state-machine-arn <PipelineStateMachineArn> --name rerun-$(date -u +%Y%m%dT%H%M%S)

Every run curates its dataset from all annotations under annotations/ (not only the new ones), so a new execution
with any fresh name retrains on everything, exactly as the failed run would have. Here: the run the gate started
fails at the quality gate; the operator fixes the cause and runs the command; the candidate is registered.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3

import fake_sagemaker
from test_pipeline_execution_moto import drop_annotations, labels_of, pipeline, run  # noqa: F401 - fixture


def rerun_command_name() -> str:
    """What `rerun-$(date -u +%Y%m%dT%H%M%S)` expands to."""
    return f"rerun-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"


def test_a_failed_run_is_rerun_with_one_start_execution(pipeline):  # noqa: F811
    truth = drop_annotations()
    # GIVEN the run the gate started failed (a bad candidate: quality gate), with its annotations consumed
    with fake_sagemaker.running(fake_sagemaker.FakeContainers(truth, labels_of(pipeline["config"]), quality="bad")):
        failed = run(pipeline["arn"], "annotations-g0")
    assert failed["status"] == "FAILED" and failed["error"] == "QualityGateFailed"
    # WHEN the operator, the cause fixed, runs the one documented command (a new execution, any fresh name)
    with fake_sagemaker.running(fake_sagemaker.FakeContainers(truth, labels_of(pipeline["config"]), quality="good")):
        rerun = run(pipeline["arn"], rerun_command_name())
    # THEN the re-run curates all annotations again and registers the candidate
    assert rerun["status"] == "SUCCEEDED", rerun.get("cause")
    output = json.loads(rerun["output"])
    assert output["dataset"]["run_id"].startswith("sav-router-rerun-")
    packages = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName="sav-router-models")["ModelPackageSummaryList"]
    assert len(packages) == 1
