"""Serving stack: intake, routing Lambda, team and review queues, idempotency, overrides, promotion."""

from __future__ import annotations

import json
import re

from aws_cdk.assertions import Match

from template_helpers import REPO, as_list, policy_statements, render, resources


def routing_function(raw: dict) -> dict:
    (fn,) = [f for f in resources(raw, "AWS::Lambda::Function").values() if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "routing"]
    return fn["Properties"]


def test_every_queue_is_kms_encrypted_and_every_working_queue_has_a_dlq(synthesized):
    raw = synthesized.raw["serving"]
    queues = resources(raw, "AWS::SQS::Queue")
    teams = synthesized.config.teams
    # intake + DLQ, review + DLQ, one queue per team + their DLQ, the approvals queue + DLQ, the approval rule's DLQ
    assert len(queues) == 2 + 2 + len(teams) + 1 + 2 + 1
    assert all(q["Properties"]["KmsMasterKeyId"] == {"Fn::ImportValue": "sav-router-key-arn"} for q in queues.values())
    redriven = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert len(redriven) == 2 + len(teams) + 1
    intake = [q for q in redriven if q["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5]
    assert len(intake) == 1 and intake[0]["Properties"]["VisibilityTimeout"] == 360  # 6 x the function timeout


def test_the_review_queue_hides_a_received_request_for_the_review_lease(synthesized):
    from sav_router.core.defaults import REVIEW_LEASE_SECONDS

    raw = synthesized.raw["serving"]
    review_url = routing_function(raw)["Environment"]["Variables"]["REVIEW_QUEUE_URL"]  # {"Ref": the queue}
    review = raw["Resources"][review_url["Ref"]]["Properties"]
    assert review["VisibilityTimeout"] == REVIEW_LEASE_SECONDS == 900


def test_routing_function_consumes_intake_with_partial_batch_failures(synthesized):
    template = synthesized.templates["serving"]
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": 25, "FunctionResponseTypes": ["ReportBatchItemFailures"], "MaximumBatchingWindowInSeconds": 1})
    fn = routing_function(synthesized.raw["serving"])
    assert fn["Runtime"].startswith("python3.") and fn["TracingConfig"] == {"Mode": "Active"} and fn["Timeout"] == 60
    assert fn["KmsKeyArn"] == {"Fn::ImportValue": "sav-router-key-arn"}


def test_routing_environment_matches_what_the_handler_reads(synthesized):
    variables = routing_function(synthesized.raw["serving"])["Environment"]["Variables"]
    source = (REPO / "lambdas" / "routing" / "handler.py").read_text()
    read = set(re.findall(r'os\.environ(?:\.get)?[\[\(]"([A-Z_]+)"', source))
    assert read - {"OVERRIDES_TTL_SECONDS", "IDEMPOTENCY_TTL_SECONDS"} <= set(variables)
    parameter = synthesized.raw["serving"]["Resources"][variables["OVERRIDES_PARAMETER"]["Ref"]]
    assert variables["ENDPOINT_NAME"] == "sav-router" and parameter["Properties"]["Name"] == "/sav-router/routing-overrides"
    # {team: queue url} as JSON, the URLs filled in at deploy time: one entry per configured team
    team_queues = json.loads(render(variables["TEAM_QUEUES"]))
    assert sorted(team_queues) == sorted(synthesized.config.teams)
    assert all(url.startswith("<RoutingTeam") for url in team_queues.values())


def test_routing_role_is_least_privilege(synthesized):
    statements = policy_statements(synthesized.raw["serving"])
    invoke = [s for s in statements if s["Action"] == "sagemaker:InvokeEndpoint"]
    assert invoke and all(render(s["Resource"]).endswith(":endpoint/sav-router") for s in invoke)
    writes = [render(r) for s in statements if s["Action"] == "s3:PutObject" for r in as_list(s["Resource"])]
    assert writes == ["sav-router-bucket-arn/traffic/*"]
    assert not any(s["Action"] in ("*", "s3:*", "sqs:*", "sagemaker:*") for s in statements)
    ssm = [s for s in statements if s["Action"] == "ssm:GetParameter"]
    assert len(ssm) == 1 and render(ssm[0]["Resource"]).endswith(":parameter<" + routing_function(synthesized.raw["serving"])["Environment"]["Variables"]["OVERRIDES_PARAMETER"]["Ref"] + ">")


def test_idempotency_table_is_encrypted_with_the_key_and_expires_records(synthesized):
    synthesized.templates["serving"].has_resource_properties("AWS::DynamoDB::GlobalTable", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
        "Replicas": [Match.object_like({"SSESpecification": {"KMSMasterKeyId": {"Fn::ImportValue": "sav-router-key-arn"}}})],
    })


def test_overrides_parameter_starts_empty(synthesized):
    synthesized.templates["serving"].has_resource_properties("AWS::SSM::Parameter", {"Name": "/sav-router/routing-overrides", "Value": "{}"})


def test_approval_rule_targets_promotion_with_retries_and_dlq(synthesized):
    synthesized.templates["serving"].has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
                         "detail": {"ModelPackageGroupName": ["sav-router-models"], "ModelApprovalStatus": ["Approved"]}},
        "Targets": [Match.object_like({"DeadLetterConfig": Match.any_value(), "RetryPolicy": {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 21600}})],
    })
    promotion = [s for s in policy_statements(synthesized.raw["serving"]) if "sagemaker:UpdateEndpoint" in s["Action"]]
    assert len(promotion) == 1
    names = sorted(render(r).rsplit(":", 1)[1] for r in promotion[0]["Resource"])
    assert names == ["endpoint-config/sav-router-v*", "endpoint/sav-router", "model/sav-router-v*"]


def test_endpoint_alarms_used_for_rollback(synthesized):
    template = synthesized.templates["serving"]
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmName": "sav-router-endpoint-5xx", "MetricName": "Invocation5XXErrors", "Namespace": "AWS/SageMaker"})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmName": "sav-router-endpoint-latency-p99", "MetricName": "ModelLatency",
                                                                "ExtendedStatistic": "p99", "Threshold": 1_000_000})
    fn = [f for f in resources(synthesized.raw["serving"], "AWS::Lambda::Function").values()
          if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "promotion"][0]
    assert json.loads(fn["Properties"]["Environment"]["Variables"]["ROLLBACK_ALARMS"]) == ["sav-router-endpoint-5xx", "sav-router-endpoint-latency-p99"]
    # one deployment at a time comes from the approvals queue (FIFO, one message group, batch of 1), not reserved concurrency
    assert "ReservedConcurrentExecutions" not in fn["Properties"]


def test_log_groups_have_retention_and_encryption(synthesized):
    for raw in synthesized.raw.values():
        for group in resources(raw, "AWS::Logs::LogGroup").values():
            assert group["Properties"]["RetentionInDays"] == 90 and "KmsKeyId" in group["Properties"]


def test_every_function_has_its_own_role_without_managed_policies(synthesized):
    for key in ("serving", "pipeline"):
        raw = synthesized.raw[key]
        for fn in resources(raw, "AWS::Lambda::Function").values():
            role = raw["Resources"][fn["Properties"]["Role"]["Fn::GetAtt"][0]]
            assert "ManagedPolicyArns" not in role["Properties"]


