"""Service access, read off the synthesized templates: every AWS service that writes to an encrypted resource is
allowed by both the resource's policy and the key's policy (the key is imported by the other stacks, where
CDK's grants to service principals add nothing). Whether AWS then evaluates these policies as intended is
only provable on an account (README, "What CI proves").
"""

from __future__ import annotations

import json
import math

from template_helpers import as_list, render, resources

KEY_IMPORT = {"Fn::ImportValue": "sav-router-key-arn"}


def key_policy(synthesized) -> list[dict]:
    (key,) = resources(synthesized.raw["foundation"], "AWS::KMS::Key").values()
    return key["Properties"]["KeyPolicy"]["Statement"]


def key_allows(synthesized, service: str, *actions: str) -> bool:
    for statement in key_policy(synthesized):
        if statement["Effect"] == "Allow" and statement.get("Principal") == {"Service": service}:
            granted = as_list(statement["Action"])
            if all(any(a == g or (g.endswith("*") and a.startswith(g[:-1])) for g in granted) for a in actions):
                return True
    return False


def queue_policy_statements(raw: dict, queue_id: str) -> list[dict]:
    statements = []
    for policy in resources(raw, "AWS::SQS::QueuePolicy").values():
        if {"Ref": queue_id} in policy["Properties"]["Queues"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def role_statements(raw: dict, role_id: str) -> list[dict]:
    statements = []
    for policy in resources(raw, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def allows(statements: list[dict], action: str, resource_matches) -> bool:
    return any(s["Effect"] == "Allow" and action in as_list(s["Action"]) and any(resource_matches(r) for r in as_list(s["Resource"]))
               for s in statements)


def function_role(raw: dict, fn: dict) -> str:
    return fn["Properties"]["Role"]["Fn::GetAtt"][0]


def test_eventbridge_can_write_to_every_queue_a_rule_targets_and_to_its_dead_letter_queue(synthesized):
    # GIVEN every EventBridge rule target that is an SQS queue, and every target's dead-letter queue
    checked = 0
    for key in ("serving", "pipeline"):
        raw = synthesized.raw[key]
        for rule_id, rule in resources(raw, "AWS::Events::Rule").items():
            for target in rule["Properties"]["Targets"]:
                queues = [target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]] if "DeadLetterConfig" in target else []
                if raw["Resources"].get(target["Arn"].get("Fn::GetAtt", [""])[0], {}).get("Type") == "AWS::SQS::Queue":
                    queues.append(target["Arn"]["Fn::GetAtt"][0])
                for queue_id in queues:
                    # THEN the queue's policy lets EventBridge send, from this rule only (aws:SourceArn)
                    sends = [s for s in queue_policy_statements(raw, queue_id)
                             if s["Effect"] == "Allow" and s.get("Principal") == {"Service": "events.amazonaws.com"} and "sqs:SendMessage" in as_list(s["Action"])]
                    assert sends, f"{rule_id} -> {queue_id}: no queue policy for EventBridge"
                    assert all(s["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}} for s in sends), sends
                    # AND the queue is encrypted with the foundation key, whose policy lets EventBridge use it
                    assert raw["Resources"][queue_id]["Properties"]["KmsMasterKeyId"] == KEY_IMPORT
                    checked += 1
    assert checked == 5  # drops queue + its DLQ, schedule DLQ, approvals queue + approval events DLQ
    assert key_allows(synthesized, "events.amazonaws.com", "kms:GenerateDataKey", "kms:Decrypt")


def test_cloudwatch_alarms_can_publish_to_the_encrypted_alarm_topic(synthesized):
    raw = synthesized.raw["foundation"]
    (policy,) = resources(raw, "AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (publish,) = [s for s in statements if s["Effect"] == "Allow" and s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert publish["Action"] == "sns:Publish"
    assert render(publish["Condition"]["ArnLike"]["aws:SourceArn"]) == "arn:<AWS::Partition>:cloudwatch:eu-west-1:123456789012:alarm:*"
    assert any(s["Effect"] == "Deny" for s in statements)  # TLS only, still
    (topic,) = resources(raw, "AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    assert key_allows(synthesized, "cloudwatch.amazonaws.com", "kms:GenerateDataKey", "kms:Decrypt")
    # every alarm of every stack notifies that topic
    for key in ("serving", "operations"):
        for alarm in resources(synthesized.raw[key], "AWS::CloudWatch::Alarm").values():
            assert [render(a) for a in alarm["Properties"]["AlarmActions"]] == ["sav-router-alarm-topic-arn"]


def test_s3_notifies_eventbridge_only_which_needs_no_resource_policy(synthesized):
    (notifications,) = resources(synthesized.raw["foundation"], "Custom::S3BucketNotifications").values()
    # no direct S3 -> SQS / SNS / Lambda notification (each would need its own policy and key access)
    assert notifications["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}


def test_lambda_async_dead_letter_queues_are_writable_by_the_function_role(synthesized):
    checked = 0
    for key in ("serving", "pipeline"):
        raw = synthesized.raw[key]
        for fn in resources(raw, "AWS::Lambda::Function").values():
            if "DeadLetterConfig" not in fn["Properties"]:
                continue
            queue_id = fn["Properties"]["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
            statements = role_statements(raw, function_role(raw, fn))
            assert allows(statements, "sqs:SendMessage", lambda r: r == {"Fn::GetAtt": [queue_id, "Arn"]})
            assert allows(statements, "kms:GenerateDataKey", lambda r: r == KEY_IMPORT)
            checked += 1
    assert checked == 1  # the gate's scheduled invocations (promotion is fed by its queue now)


def test_every_function_fed_by_an_encrypted_queue_can_decrypt_it(synthesized):
    checked = 0
    for key in ("serving", "pipeline"):
        raw = synthesized.raw[key]
        functions = resources(raw, "AWS::Lambda::Function")
        for mapping in resources(raw, "AWS::Lambda::EventSourceMapping").values():
            fn = functions[mapping["Properties"]["FunctionName"]["Ref"]]
            assert allows(role_statements(raw, function_role(raw, fn)), "kms:Decrypt", lambda r: r == KEY_IMPORT)
            checked += 1
    assert checked == 3  # routing, gate, promotion


def test_the_promotion_function_role_can_use_the_key_of_its_queues(synthesized):
    """Finding 8: the promotion role could not use the key of its encrypted dead-letter queue."""
    raw = synthesized.raw["serving"]
    (fn,) = [f for f in resources(raw, "AWS::Lambda::Function").values() if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "promotion"]
    statements = role_statements(raw, function_role(raw, fn))
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert allows(statements, action, lambda r: r == KEY_IMPORT)


def test_sagemaker_jobs_can_read_inputs_write_outputs_and_use_the_key(synthesized):
    raw = synthesized.raw["foundation"]
    (role_id,) = [i for i, r in resources(raw, "AWS::IAM::Role").items()
                  if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}]
    statements = role_statements(raw, role_id)
    objects = lambda suffix: lambda r: render(r).endswith(suffix)  # noqa: E731
    assert allows(statements, "s3:GetObject", objects("/datasets/*")) and allows(statements, "s3:GetObject", objects("/models/training/*"))
    assert allows(statements, "s3:PutObject", objects("/models/training/*")) and allows(statements, "s3:PutObject", objects("/evaluations/*"))
    assert not allows(statements, "s3:PutObject", objects("/models/manifests/*")) and not allows(statements, "s3:PutObject", objects("/models/*"))
    key = lambda r: render(r).startswith("<Key") and render(r).endswith(".Arn>")  # noqa: E731 - the foundation's own key
    for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"):
        assert allows(statements, action, key), action
    # the state machine and the promotion function pass that role to SageMaker, for SageMaker only
    for stack in ("pipeline", "serving"):
        passes = [s for s in [st for p in resources(synthesized.raw[stack], "AWS::IAM::Policy").values() for st in p["Properties"]["PolicyDocument"]["Statement"]]
                  if s["Action"] == "iam:PassRole"]
        assert passes and all(s["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}} for s in passes)


def test_rollback_alarms_are_readable_by_the_roles_that_need_them(synthesized):
    """Finding 6: SageMaker needs cloudwatch:DescribeAlarms on the auto-rollback alarms."""
    serving = synthesized.raw["serving"]
    (fn,) = [f for f in resources(serving, "AWS::Lambda::Function").values() if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "promotion"]
    names = json.loads(fn["Properties"]["Environment"]["Variables"]["ROLLBACK_ALARMS"])
    alarm_names = {a["Properties"]["AlarmName"] for a in resources(serving, "AWS::CloudWatch::Alarm").values()}
    assert set(names) <= alarm_names  # the alarms exist, under those names
    wanted = {f"arn:<AWS::Partition>:cloudwatch:eu-west-1:123456789012:alarm:{name}" for name in names}

    def readable(statements):
        return wanted <= {render(r) for s in statements if "cloudwatch:DescribeAlarms" in as_list(s["Action"]) for r in as_list(s["Resource"])}

    # the caller of UpdateEndpoint (the promotion function) and the SageMaker execution role
    assert readable(role_statements(serving, function_role(serving, fn)))
    foundation = synthesized.raw["foundation"]
    (role_id,) = [i for i, r in resources(foundation, "AWS::IAM::Role").items()
                  if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}]
    assert readable(role_statements(foundation, role_id))


def test_traffic_is_readable_only_by_the_observer_mode_step(synthesized):
    (policy,) = [p for p in resources(synthesized.raw["foundation"], "AWS::S3::BucketPolicy").values()
                 if any(s.get("Sid") == "TrafficReadOnlyByObserverMode" for s in p["Properties"]["PolicyDocument"]["Statement"])]
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "TrafficReadOnlyByObserverMode"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"} and "s3:GetObject" in deny["Action"]
    assert render(deny["Resource"]).endswith("/traffic/requests/*")  # the request texts; decisions carry none
    reader = render(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
    assert reader == "arn:<AWS::Partition>:iam::123456789012:role/sav-router-eu-west-1-shadow-prepare"
    # that role exists, with that name, and is the shadow_prepare function's
    pipeline = synthesized.raw["pipeline"]
    (fn,) = [f for f in resources(pipeline, "AWS::Lambda::Function").values() if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "shadow_prepare"]
    assert pipeline["Resources"][function_role(pipeline, fn)]["Properties"]["RoleName"] == "sav-router-eu-west-1-shadow-prepare"


def test_an_approval_during_a_blue_green_update_is_retried_for_longer_than_the_update(synthesized):
    """Finding 8: Lambda's async retries (about 3 minutes) gave up long before a 20-minute bake ended."""
    from infra.promotion import update_seconds

    raw = synthesized.raw["serving"]
    (rule_id, rule), = [(i, r) for i, r in resources(raw, "AWS::Events::Rule").items() if r["Properties"]["EventPattern"]["source"] == ["aws.sagemaker"]]
    (target,) = rule["Properties"]["Targets"]
    queue = raw["Resources"][target["Arn"]["Fn::GetAtt"][0]]["Properties"]
    assert queue["FifoQueue"] is True and target["SqsParameters"] == {"MessageGroupId": "approvals"}  # one at a time, in order
    window = queue["RedrivePolicy"]["maxReceiveCount"] * queue["VisibilityTimeout"]
    assert window >= 3 * update_seconds(synthesized.config) and update_seconds(synthesized.config) >= 2 * synthesized.config.endpoint.baking_seconds
    assert math.isclose(queue["VisibilityTimeout"], 6 * 60)
    (mapping,) = [m for m in resources(raw, "AWS::Lambda::EventSourceMapping").values() if m["Properties"]["EventSourceArn"] == target["Arn"]]
    assert mapping["Properties"]["BatchSize"] == 1


def test_routing_concurrency_protects_the_endpoint_without_throttling_sqs(synthesized):
    raw = synthesized.raw["serving"]
    (fn_id, fn), = [(i, f) for i, f in resources(raw, "AWS::Lambda::Function").items() if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "routing"]
    (mapping,) = [m for m in resources(raw, "AWS::Lambda::EventSourceMapping").values() if m["Properties"]["FunctionName"] == {"Ref": fn_id}]
    assert fn["Properties"]["ReservedConcurrentExecutions"] == synthesized.config.routing_concurrency
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": synthesized.config.routing_concurrency}


def test_the_drift_monitor_reads_decisions_and_manifests_only(synthesized):
    """Wired into the operations stack: it reads traffic/decisions/ (no request text) and the manifests, nothing else."""
    operations = synthesized.raw["operations"]
    (fn,) = [f for f in resources(operations, "AWS::Lambda::Function").values()
             if f["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == "drift_monitor"]
    role = function_role(operations, fn)
    statements = json.dumps([p for p in resources(operations, "AWS::IAM::Policy").values()
                             if role in json.dumps(p["Properties"].get("Roles", []))])
    assert "traffic/decisions/" in statements and "models/manifests/" in statements
    assert "traffic/requests/" not in statements
