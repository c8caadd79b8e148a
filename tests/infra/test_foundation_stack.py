"""Foundation stack: the key, the artifacts bucket, the SageMaker role, the registry."""

from __future__ import annotations

from aws_cdk.assertions import Match

from template_helpers import as_list, policy_statements, render, resources


def test_customer_managed_key_rotates(synthesized):
    # GIVEN / WHEN the foundation template / THEN one rotating customer-managed key with an alias
    template = synthesized.templates["foundation"]
    template.resource_count_is("AWS::KMS::Key", 1)
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/sav-router"})


def test_artifacts_bucket_is_versioned_kms_encrypted_private_and_emits_events(synthesized):
    template = synthesized.templates["foundation"]
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": Match.any_value()}, "BucketKeyEnabled": True}]},
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "LoggingConfiguration": Match.object_like({"LogFilePrefix": "artifacts/"}),
        "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({"Prefix": "traffic/", "ExpirationInDays": 30})])},
    })
    # EventBridge notifications (what the annotation rule listens to)
    template.has_resource_properties("Custom::S3BucketNotifications", {"NotificationConfiguration": {"EventBridgeConfiguration": {}}})


def test_every_bucket_denies_plain_http(synthesized):
    raw = synthesized.raw["foundation"]
    policies = resources(raw, "AWS::S3::BucketPolicy").values()
    assert len(policies) == 2  # artifacts and access logs
    for policy in policies:
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy["Properties"]["PolicyDocument"]["Statement"])


def test_sagemaker_role_reads_datasets_writes_training_output_and_evaluations_only(synthesized):
    raw = synthesized.raw["foundation"]
    (role,) = [r for r in resources(raw, "AWS::IAM::Role").values()
               if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}]
    assert "ManagedPolicyArns" not in role["Properties"]
    statements = policy_statements(raw)
    puts = [s for s in statements if s["Action"] == "s3:PutObject"]
    written = sorted(render(r).split(">", 1)[1] for s in puts for r in as_list(s["Resource"]))
    # never models/manifests/ (the thresholds the routing Lambda trusts), never datasets/
    assert written == ["/evaluations/*", "/models/training/*"]
    assert not any("datasets" in str(s["Resource"]) or "manifests" in str(s["Resource"]) for s in puts)
    # ECR pull from the configured repository only
    pulls = [render(s["Resource"]) for s in statements if s["Action"] == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]]
    assert pulls == ["arn:<AWS::Partition>:ecr:eu-west-1:123456789012:repository/sav-router"]


def test_model_package_group_and_fixed_exports(synthesized):
    template = synthesized.templates["foundation"]
    template.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "sav-router-models"})
    exports = {o["Export"]["Name"] for o in synthesized.raw["foundation"]["Outputs"].values()}
    # no image URI: it changes with every build, and an export in use cannot change
    assert exports == {f"sav-router-{what}" for what in ("bucket-name", "bucket-arn", "key-arn", "sagemaker-role-arn", "alarm-topic-arn")}


def test_no_aws_managed_full_access_policy_anywhere(synthesized):
    for raw in synthesized.raw.values():
        for role in resources(raw, "AWS::IAM::Role").values():
            assert "FullAccess" not in str(role["Properties"].get("ManagedPolicyArns", []))
