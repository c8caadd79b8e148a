"""Pipeline stack: annotation drop -> gate -> state machine (asserted on its synthesized definition)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

import aws_env
from template_helpers import as_list, policy_statements, render, resources, synth_context


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
    # certified among ONNX backends only (int8, then fp32, else the job fails): the models run in the serving image, without torch
    assert params["HyperParameters"]["serving_backend"] == "onnx-auto"
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


# -- the two images (issue 21): the training job in the full image, every model in the serving image ------------------

SERVING_URI = f"{aws_env.ACCOUNT}.dkr.ecr.{aws_env.REGION}.amazonaws.com/sav-router-serving:test"
REPOSITORY = f"arn:<AWS::Partition>:ecr:{aws_env.REGION}:{aws_env.ACCOUNT}:repository/"


def synth_app(outdir, **overrides) -> dict:
    """The four stacks with cdk.json's configuration changed by `overrides` (None removes a key): raw templates, assets."""
    import aws_cdk as cdk

    from infra.config import from_context
    from infra.stacks import build

    context = synth_context()
    settings = {k: v for k, v in {**context["sav-router"], **overrides}.items() if v is not None}
    app = cdk.App(outdir=str(outdir), context={**context, "sav-router": settings})
    stacks = build(app, from_context(settings), env=cdk.Environment(account=aws_env.ACCOUNT, region=aws_env.REGION))
    assembly = app.synth()
    raw = {key: assembly.get_stack_artifact(stack.artifact_id).template for key, stack in stacks.items()}
    assets = json.loads((outdir / f"{stacks['pipeline'].artifact_id}.assets.json").read_text()).get("dockerImages", {})
    return {"raw": raw, "images": [asset["source"] for asset in assets.values()]}


def without_subs(value):
    """An image asset's URI is an Fn::Sub (${AWS::URLSuffix}): kept as its text, for comparison."""
    if isinstance(value, dict):
        return value["Fn::Sub"] if set(value) == {"Fn::Sub"} else {k: without_subs(v) for k, v in value.items()}
    return [without_subs(v) for v in value] if isinstance(value, list) else value


def images(raw_pipeline: dict) -> dict[str, str]:
    (machine,) = resources(raw_pipeline, "AWS::StepFunctions::StateMachine").values()
    states = json.loads(render(without_subs(machine["Properties"]["DefinitionString"])))["States"]
    return {
        "training job": states["Start Training"]["Parameters"]["AlgorithmSpecification"]["TrainingImage"],
        "model": states["Create model"]["Parameters"]["PrimaryContainer"]["Image"],
        "model package": states["Register model package"]["Parameters"]["InferenceSpecification"]["Containers"][0]["Image"],
    }


def ecr_statements(raw: dict, action: str) -> list[dict]:
    return [s for s in policy_statements(raw) if action in as_list(s["Action"])]


def test_with_one_prebuilt_image_everything_runs_in_it(synthesized):
    assert set(images(synthesized.raw["pipeline"]).values()) == {aws_env.IMAGE_URI}


def test_a_prebuilt_serving_image_runs_the_models_and_both_repositories_are_pulled_from(tmp_path):
    # GIVEN imageUri (the training image) and servingImageUri, in two repositories
    app = synth_app(tmp_path, servingImageUri=SERVING_URI)
    # THEN the training job runs the training image; the check / shadow transforms' model and the registered package the serving one
    assert images(app["raw"]["pipeline"]) == {"training job": aws_env.IMAGE_URI, "model": SERVING_URI, "model package": SERVING_URI}
    assert app["images"] == []  # nothing built at deploy
    # AND the SageMaker role pulls from those two repositories, nothing else
    (pull,) = ecr_statements(app["raw"]["foundation"], "ecr:GetDownloadUrlForLayer")
    assert sorted(render(r) for r in as_list(pull["Resource"])) == [f"{REPOSITORY}sav-router", f"{REPOSITORY}sav-router-serving"]
    # AND the state machine may only read (not pull) the image it registers: the serving one
    (read,) = ecr_statements(app["raw"]["pipeline"], "ecr:DescribeImages")
    assert render(read["Resource"]) == f"{REPOSITORY}sav-router-serving" and "ecr:GetDownloadUrlForLayer" not in read["Action"]


def test_without_prebuilt_images_both_targets_are_built_at_deploy(tmp_path):
    # GIVEN no imageUri: cdk deploy builds training_image/Dockerfile
    app = synth_app(tmp_path, imageUri=None)
    # THEN two image assets of the same Dockerfile: its default target (training) and the serving target
    assert sorted(image["dockerBuildTarget"] for image in app["images"]) == ["serving", "training"]
    assert {image["dockerFile"] for image in app["images"]} == {"training_image/Dockerfile"}
    found = images(app["raw"]["pipeline"])
    assert found["model"] == found["model package"] != found["training job"]
    # AND the foundation grants no pull (no prebuilt repository); the pipeline stack grants the pull from the assets repository
    assert not ecr_statements(app["raw"]["foundation"], "ecr:GetDownloadUrlForLayer")
    pulls = ecr_statements(app["raw"]["pipeline"], "ecr:GetDownloadUrlForLayer")
    assert pulls and all("container-assets" in render(r) for s in pulls for r in as_list(s["Resource"]))
    (read,) = ecr_statements(app["raw"]["pipeline"], "ecr:DescribeImages")
    assert "container-assets" in render(read["Resource"])


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_a_backend_that_may_need_torch_is_refused_when_the_models_run_without_it(tmp_path, backend):
    from infra.config import ConfigError

    training = {**synth_context()["sav-router"].get("training", {}), "hyperparameters": {"serving_backend": backend}}
    with pytest.raises(ConfigError, match="serving image.*cannot serve"):
        synth_app(tmp_path / "serving", servingImageUri=SERVING_URI, training=training)
    # one image for both (it has torch): the setting is honoured
    app = synth_app(tmp_path / "one", training=training)
    (machine,) = resources(app["raw"]["pipeline"], "AWS::StepFunctions::StateMachine").values()
    states = json.loads(render(machine["Properties"]["DefinitionString"]))["States"]
    assert states["Start Training"]["Parameters"]["HyperParameters"]["serving_backend"] == backend
