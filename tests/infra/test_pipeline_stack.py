"""Pipeline stack: annotation drop -> gate -> state machine (asserted on its synthesized definition)."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from template_helpers import as_list, policy_statements, render, resources


def definition(synthesized) -> dict:
    (machine,) = resources(synthesized.raw["pipeline"], "AWS::StepFunctions::StateMachine").values()
    return json.loads(render(machine["Properties"]["DefinitionString"]))


def test_annotation_drops_reach_the_gate_through_a_debouncing_queue(synthesized):
    template = synthesized.templates["pipeline"]
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                         "detail": {"bucket": {"name": [{"Fn::ImportValue": "sav-router-bucket-name"}]}, "object": {"key": [{"prefix": "annotations/"}]}}},
        "Targets": [Match.object_like({"DeadLetterConfig": Match.any_value(), "RetryPolicy": Match.object_like({"MaximumRetryAttempts": 8})})],
    })
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {"BatchSize": 100, "MaximumBatchingWindowInSeconds": 300,
                                                                         "ScalingConfig": {"MaximumConcurrency": 2}})
    template.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(1 hour)"})
    (gate,) = [f for f in resources(synthesized.raw["pipeline"], "AWS::Lambda::Function").values()
               if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "annotation_trigger"]
    # no reserved concurrency: throttled SQS-triggered invocations would burn receive counts (MaximumConcurrency bounds it)
    assert "ReservedConcurrentExecutions" not in gate["Properties"]
    assert gate["Properties"]["Environment"]["Variables"]["MIN_NEW_ROWS"] == "100"


def test_the_state_machine_polls_sagemaker_without_sync_integrations(synthesized):
    states = definition(synthesized)["States"]
    resources_ = {s.get("Resource", "") for s in states.values()}
    assert not any(r.endswith(".sync") for r in resources_)
    sdk = "arn:<AWS::Partition>:states:::aws-sdk:sagemaker:"
    assert {f"{sdk}{action}" for action in ("createTrainingJob", "describeTrainingJob", "createTransformJob", "describeTransformJob",
                                            "createModel", "createModelPackage")} <= resources_
    assert states["Wait Training"]["Seconds"] == synthesized.config.poll_seconds
    choices = {c["StringEquals"]: c["Next"] for c in states["Training status?"]["Choices"]}
    assert choices == {"Completed": "Training completed", "Failed": "Why Training failed", "Stopped": "Training stopped"}


def test_training_runs_isolated_and_encrypted_on_the_curated_channels(synthesized):
    params = definition(synthesized)["States"]["Start Training"]["Parameters"]
    assert params["EnableNetworkIsolation"] is True and params["EnableInterContainerTrafficEncryption"] is True
    assert params["ResourceConfig"]["VolumeKmsKeyId"] == params["OutputDataConfig"]["KmsKeyId"] == "sav-router-key-arn"  # the imported key
    assert params["OutputDataConfig"]["S3OutputPath"].endswith("/models/training/")
    assert [c["ChannelName"] for c in params["InputDataConfig"]] == ["train", "teams"]
    assert params["HyperParameters"]["target_precision"] == "0.95"
    assert params["AlgorithmSpecification"]["TrainingImage"] == synthesized.config.image_uri  # configured: no image asset, no export
    assert "VpcConfig" not in params  # no VPC configured in cdk.json


def test_transforms_use_the_jsonlines_contract(synthesized):
    states = definition(synthesized)["States"]
    for name, suffix in (("Start CheckTransform", "-check"), ("Start ShadowTransform", "-shadow")):
        params = states[name]["Parameters"]
        assert params["TransformJobName.$"] == f"States.Format('{{}}{suffix}', $.dataset.run_id)"
        assert params["TransformInput"]["SplitType"] == "Line" and params["TransformInput"]["ContentType"] == "application/jsonlines"
        assert params["TransformOutput"]["AssembleWith"] == "Line" and "KmsKeyId" in params["TransformOutput"]


def test_gate_failure_and_step_errors_end_in_fail_states(synthesized):
    states = definition(synthesized)["States"]
    gate = states["Quality gate passed?"]
    assert gate["Choices"][0]["Variable"] == "$.evaluation.gate.passed" and gate["Default"] == "Quality gate failed"
    assert states["Quality gate failed"] == {"Type": "Fail", "Error": "QualityGateFailed", "CausePath": "$.evaluation.gate.summary"}
    for name in ("Prepare dataset", "Evaluate", "Create model", "Register model package", "Start Training"):
        assert states[name]["Catch"][0]["Next"] == "Pipeline step failed"
    register = states["Register model package"]["Parameters"]
    assert register["ModelApprovalStatus.$"] == "$.comparison.approval_status"
    assert states["No traffic to replay"]["Result"]["approval_status"] == "PendingManualApproval"  # approvalMode manual


def test_state_machine_role_scopes_sagemaker_to_the_deployment_prefix(synthesized):
    statements = policy_statements(synthesized.raw["pipeline"])
    sagemaker = [s for s in statements if any(a.startswith("sagemaker:Create") for a in as_list(s["Action"]))]
    targets = sorted(render(r).rsplit(":", 1)[1] for s in sagemaker for r in as_list(s["Resource"]))
    assert targets and all(t.startswith(("training-job/sav-router-", "transform-job/sav-router-", "model/sav-router-", "model-package"))
                           for t in targets)
    (passrole,) = [s for s in statements if s["Action"] == "iam:PassRole" and "Condition" in s]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_state_machine_logs_everything_and_traces(synthesized):
    synthesized.templates["pipeline"].has_resource_properties("AWS::StepFunctions::StateMachine", {
        "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": False}),
        "TracingConfiguration": {"Enabled": True},
    })
