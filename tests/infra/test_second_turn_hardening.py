"""Issue 19, synthesized: teardown (custom resources, buckets), no auto-generated export imported, the state
machine's log group under /aws/vendedlogs/, no volume key for NVMe types, the `-c sav-router='{...}'` string
override, and the deploy-only requirements."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import aws_env
from template_helpers import REPO, render, resources, synth_context


def custom_resource(raw: dict) -> dict:
    (found,) = resources(raw, "Custom::SavRouterRuntimeResources").values()
    return found


@pytest.mark.parametrize("stack, expected", [
    ("serving", {"EndpointName": "sav-router"}),
    ("pipeline", {"RunModelPrefix": "sav-router", "ModelPackageGroupName": "sav-router-models"}),
])
def test_each_stack_that_creates_runtime_resources_removes_them_on_delete(synthesized, stack, expected):
    raw = synthesized.raw[stack]
    resource = custom_resource(raw)
    props = resource["Properties"]
    assert {k: v for k, v in props.items() if k != "ServiceToken"} == expected
    function_id = props["ServiceToken"]["Fn::GetAtt"][0]
    function = raw["Resources"][function_id]["Properties"]
    assert function["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "teardown"
    # the custom resource is deleted before its function, role and role policy (it depends on the function, which
    # depends on its policy): the permissions still exist when CloudFormation asks it to delete
    assert function_id in json.dumps(resource)
    policy_ids = [lid for lid, p in resources(raw, "AWS::IAM::Policy").items() if {"Ref": function["Role"]["Fn::GetAtt"][0]} in p["Properties"]["Roles"]]
    assert set(policy_ids) <= set(raw["Resources"][function_id].get("DependsOn", []))
    actions = {a for lid in policy_ids for s in resources(raw, "AWS::IAM::Policy")[lid]["Properties"]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    wanted = {"serving": {"sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel"},
              "pipeline": {"sagemaker:DeleteModel", "sagemaker:DeleteModelPackage", "sagemaker:ListModelPackages"}}[stack]
    assert wanted <= actions


def test_no_stack_imports_an_automatically_generated_export(synthesized):
    fixed = {o["Export"]["Name"] for o in synthesized.raw["foundation"]["Outputs"].values() if "Export" in o}
    for key, raw in synthesized.raw.items():
        imports = set(re.findall(r'"Fn::ImportValue": "([^"]+)"', json.dumps(raw)))
        assert imports <= fixed, (key, sorted(imports - fixed))
        exports = [o["Export"]["Name"] for o in raw.get("Outputs", {}).values() if "Export" in o]
        assert not [name for name in exports if ":Exports" in name or "ExportsOutput" in name], (key, exports)
    # the operations stack reads the other stacks' names from SSM parameters with fixed names, resolved at each deploy
    parameters = synthesized.raw["operations"]["Parameters"]
    names = {p["Default"] for p in parameters.values() if p["Type"] == "AWS::SSM::Parameter::Value<String>" and p["Default"].startswith("/sav-router/")}
    published = {render(p["Properties"]["Name"]) for raw in (synthesized.raw["serving"], synthesized.raw["pipeline"])
                 for p in resources(raw, "AWS::SSM::Parameter").values()}
    assert names and names <= published


def test_the_state_machine_logs_under_vendedlogs(synthesized):
    (machine,) = resources(synthesized.raw["pipeline"], "AWS::StepFunctions::StateMachine").values()
    log_group_id = machine["Properties"]["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert synthesized.raw["pipeline"]["Resources"][log_group_id]["Properties"]["LogGroupName"] == "/aws/vendedlogs/states/sav-router-training"


def test_nvme_instance_types_get_no_volume_kms_key_and_others_keep_it():
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import from_context
    from infra.stacks import build

    context = synth_context()
    config = dict(context["sav-router"], training={**context["sav-router"]["training"], "instanceType": "ml.g5.2xlarge"},
                  transformInstanceType="ml.c5d.xlarge")
    app = cdk.App(context={**context, "sav-router": config})
    stacks = build(app, from_context(config), env=cdk.Environment(account=aws_env.ACCOUNT, region=aws_env.REGION))
    (machine,) = resources(Template.from_stack(stacks["pipeline"]).to_json(), "AWS::StepFunctions::StateMachine").values()
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    assert "VolumeKmsKeyId" not in definition and "ml.g5.2xlarge" in definition
    assert '\\"KmsKeyId\\"' in definition  # outputs stay encrypted with the key


def test_a_malformed_instance_type_is_refused_at_synth():
    from infra.config import ConfigError, from_context

    config = dict(synth_context()["sav-router"], transformInstanceType="m5 large")
    with pytest.raises(ConfigError, match="transformInstanceType: not a SageMaker instance type"):
        from_context(config)


def synth_app(tmp_path, context: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_CONTEXT", "SAV_ROUTER_"))}
    env.update(CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps({"aws:cdk:bundling-stacks": [], **context}),
               SAV_ROUTER_IMAGE_URI=aws_env.IMAGE_URI, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_DISABLE_CLI_TELEMETRY="true")
    return subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_cli_string_override_with_retain_data_false_empties_and_deletes_the_buckets(tmp_path):
    # GIVEN `cdk deploy -c sav-router='{"retainData": false}'`: the CLI passes the value as a string
    result = synth_app(tmp_path, {"sav-router": json.dumps({"retainData": False})})
    # THEN app.py parses it over cdk.json's object (the teams stay), synthesizes, and cdk-nag is clean
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"] == []
    foundation = json.loads((tmp_path / "SavRouterFoundation.template.json").read_text())
    buckets = resources(foundation, "AWS::S3::Bucket")
    assert len(buckets) == 2 and all(b["DeletionPolicy"] == "Delete" for b in buckets.values())
    emptied = {render(r["Properties"]["BucketName"]) for r in resources(foundation, "Custom::S3AutoDeleteObjects").values()}
    assert emptied == {f"<{lid}>" for lid in buckets}  # both buckets emptied (every version) before deletion
    operations = json.loads((tmp_path / "SavRouterOperations.template.json").read_text())
    assert operations["Outputs"]["DataOnDelete"]["Value"].startswith("deleted:")
    serving = json.loads((tmp_path / "SavRouterServing.template.json").read_text())
    assert len(resources(serving, "AWS::SQS::Queue")) > 10  # the teams of cdk.json are still there


def test_by_default_the_data_is_retained_and_the_output_says_so(synthesized):
    for bucket in resources(synthesized.raw["foundation"], "AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    assert not resources(synthesized.raw["foundation"], "Custom::S3AutoDeleteObjects")
    assert synthesized.raw["operations"]["Outputs"]["DataOnDelete"]["Value"].startswith("retained:")


def test_a_malformed_cli_override_is_one_line_naming_the_context(tmp_path):
    result = synth_app(tmp_path, {"sav-router": "{retainData: false}"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cdk context 'sav-router': the -c value is not a JSON object")


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[name.strip().lower()] = version.strip()
    return found


def test_deploy_requirements_are_the_cdk_pins_of_requirements_txt_and_nothing_else():
    deploy, full = pins(REPO / "requirements-deploy.txt"), pins(REPO / "requirements.txt")
    assert set(deploy) == {"aws-cdk-lib", "constructs", "cdk-nag"}
    assert all(full[name] == version for name, version in deploy.items())


def test_app_py_imports_nothing_heavy(tmp_path):
    """With requirements-deploy.txt only, app.py must synthesize: it may import no torch, numpy, transformers..."""
    probe = ("import sys, runpy; sys.argv = ['app.py']; import app; app.main(); "
             "heavy = sorted(m for m in ('torch', 'numpy', 'scipy', 'sklearn', 'transformers', 'tokenizers') if m in sys.modules); print('HEAVY', heavy)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_CONTEXT", "SAV_ROUTER_"))}
    env.update(CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps({"aws:cdk:bundling-stacks": []}), SAV_ROUTER_IMAGE_URI=aws_env.IMAGE_URI,
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stdout, result.stdout[-500:]


def test_the_observer_mode_copy_of_customer_text_expires_and_is_read_only_by_observer_mode_and_sagemaker(synthesized):
    from sav_router.aws.s3io import CUSTOMER_TEXT_TAG

    foundation = synthesized.raw["foundation"]
    (bucket,) = [b for b in resources(foundation, "AWS::S3::Bucket").values() if "LifecycleConfiguration" in b["Properties"]
                 and any(r.get("Prefix") == "traffic/" for r in b["Properties"]["LifecycleConfiguration"]["Rules"])]
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    copies, traffic = rules["customer-text-copies"], rules["traffic-retention"]
    assert copies["TagFilters"] == [{"Key": k, "Value": v} for k, v in CUSTOMER_TEXT_TAG.items()]
    assert copies["ExpirationInDays"] == traffic["ExpirationInDays"]
    statements = [s for p in resources(foundation, "AWS::S3::BucketPolicy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (deny,) = [s for s in statements if s.get("Sid") == "ShadowInputReadOnlyByObserverMode"]
    assert deny["Effect"] == "Deny" and render(deny["Resource"]).endswith("/datasets/*/shadow/requests.jsonl")
    allowed = [render(a) for a in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]]
    assert allowed[0].endswith(":role/sav-router-eu-west-1-shadow-prepare") and "SageMakerExecutionRole" in allowed[1]


def test_the_state_machine_role_may_read_the_image_it_registers(synthesized):
    raw = synthesized.raw["pipeline"]
    (machine,) = resources(raw, "AWS::StepFunctions::StateMachine").values()
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = [s for p in resources(raw, "AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (ecr,) = [s for s in statements if "ecr:BatchGetImage" in s["Action"]]
    assert render(ecr["Resource"]) == f"arn:<AWS::Partition>:ecr:{aws_env.REGION}:{aws_env.ACCOUNT}:repository/sav-router"
    assert set(ecr["Action"]) == {"ecr:BatchGetImage", "ecr:DescribeImages"}
