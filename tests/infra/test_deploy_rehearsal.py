"""Deploy rehearsal: `python app.py` as `cdk deploy` runs it (bundling on, real `pip install --platform`), then
every asset is checked, and the pure-Python handlers are imported and run from their bundled folders.

What this cannot prove (README, "What CI proves"): that AWS accepts the templates, IAM and KMS evaluation at
run time, the Lambda runtime itself (the handlers run here on this machine's Python, not 3.14), the image build.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aws_env
from template_helpers import REPO, resources

# What the Lambda Python runtime ships besides the standard library (the AWS SDK and its dependencies).
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")
# Handlers whose bundles hold only pure-Python code: they import on any CPython. `evaluate` bundles numpy /
# scipy / scikit-learn built for the 3.14 runtime, which this machine's Python cannot load: checked on disk only.
PURE_PYTHON = ("annotation_trigger", "prepare_dataset", "promotion", "routing", "shadow_prepare", "shadow_compare")
FUNCTIONS = tuple(sorted(p.name for p in (REPO / "lambdas").iterdir() if (p / "handler.py").is_file()))


def requirement_names(folder: Path) -> list[tuple[str, str]]:
    """(distribution name, version) of each pinned line of a function's requirements.txt (extras dropped)."""
    pins = []
    for line in (folder / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = re.sub(r"\[.*?\]", "", line).partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def bundles(rehearsal) -> dict[str, Path]:
    """Service name (POWERTOOLS_SERVICE_NAME = lambdas/<name>) -> its staged asset folder, found through the templates."""
    assert rehearsal.result.returncode == 0, (rehearsal.result.stdout[-2000:], rehearsal.result.stderr[-4000:])
    found = {}
    for template in rehearsal.templates().values():
        for fn in resources(template, "AWS::Lambda::Function").values():
            variables = fn["Properties"].get("Environment", {}).get("Variables", {})
            if "POWERTOOLS_SERVICE_NAME" not in variables:
                continue  # CDK's own bucket-notifications handler (inline code)
            key = fn["Properties"]["Code"]["S3Key"]
            found[variables["POWERTOOLS_SERVICE_NAME"]] = rehearsal.outdir / f"asset.{key.removesuffix('.zip')}"
    return found


def test_the_app_synthesizes_with_bundling_on_and_no_credentials(rehearsal):
    # GIVEN cdk.json as committed (imageUri null: the image is built at deploy), bundling on, no AWS_* variables
    # WHEN `python app.py` runs (what `cdk deploy` runs first) / THEN it succeeds, cdk-nag clean, four templates
    assert rehearsal.result.returncode == 0, rehearsal.result.stderr[-4000:]
    assert "Bundling asset" in rehearsal.result.stdout + rehearsal.result.stderr  # bundling really ran
    assert json.loads((rehearsal.outdir / "validation-report.json").read_text())["pluginReports"] == []
    assert sorted(rehearsal.templates()) == ["SavRouterFoundation", "SavRouterOperations", "SavRouterPipeline", "SavRouterServing"]
    print(f"deploy rehearsal: python app.py with bundling took {rehearsal.seconds:.1f} s")


def test_every_asset_of_every_stack_exists(rehearsal):
    files, images = 0, 0
    for manifest in rehearsal.outdir.glob("*.assets.json"):
        assets = json.loads(manifest.read_text())
        for asset in assets.get("files", {}).values():
            assert (rehearsal.outdir / asset["source"]["path"]).exists(), asset
            files += 1
        for asset in assets.get("dockerImages", {}).values():
            context = rehearsal.outdir / asset["source"]["directory"]
            # `docker build --file` reads the Dockerfile from the staged context
            assert (context / asset["source"]["dockerFile"]).is_file(), f"{asset['source']['dockerFile']} missing from the staged build context"
            images += 1
    assert files >= len(FUNCTIONS) + 4 and images == 2  # a Lambda asset each, the four templates; the training and serving images


def test_the_staged_image_context_holds_what_the_dockerfile_copies(rehearsal):
    (manifest,) = [json.loads(p.read_text()) for p in rehearsal.outdir.glob("SavRouterPipeline.assets.json")]
    # the two targets of the one Dockerfile: training (the training job) and serving (every model)
    assert sorted(image["source"]["dockerBuildTarget"] for image in manifest["dockerImages"].values()) == ["serving", "training"]
    for image in manifest["dockerImages"].values():
        context = rehearsal.outdir / image["source"]["directory"]
        dockerfile = (context / image["source"]["dockerFile"]).read_text()
        copies = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("COPY")]
        sources = [arg for args in copies for arg in [a for a in args if not a.startswith("--")][:-1]]
        assert sources and all((context / source).exists() for source in sources), sources
        # and nothing else of note: no tests, docs, README (which would change the image on every edit)
        assert not (context / "tests").exists() and not (context / "README.md").exists() and not (context / "docs").exists()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_lambda_asset_holds_handler_core_package_and_its_requirements(bundles, name):
    bundle = bundles[name]
    assert (bundle / "handler.py").is_file()
    assert (bundle / "sav_router" / "__init__.py").is_file()
    installed = {p.name.split("-")[0].lower().replace("_", "-"): p.name for p in bundle.glob("*.dist-info")}
    for distribution, version in requirement_names(REPO / "lambdas" / name):
        key = distribution.lower().replace("_", "-")
        assert key in installed, f"{distribution} missing from the {name} bundle"
        assert installed[key].startswith(f"{installed[key].split('-')[0]}-{version}."), installed[key]
    # the runtime's own AWS SDK (and its urllib3, dateutil, six) is used, never a copy pulled in as a dependency
    shadowing = {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "python_dateutil", "six", "six.py"}
    assert not [p.name for p in bundle.iterdir() if p.name.split("-")[0] in shadowing]
    size = folder_bytes(bundle)
    assert size < 250 * 1024 * 1024, f"{name}: {size / 2**20:.0f} MB unzipped, above Lambda's 250 MB"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_lambda_asset_holds_only_the_package_modules_its_handler_imports(bundles, name):
    from infra.lambda_sources import asset_sources

    found = {path for path in asset_sources(REPO / "lambdas" / name) if path.startswith("sav_router/")}
    shipped = {p.relative_to(bundles[name]).as_posix() for p in (bundles[name] / "sav_router").rglob("*") if p.is_file()}
    assert shipped == found
    assert not any(path.startswith(("sav_router/console/", "sav_router/samples/", "sav_router/serving/")) for path in shipped)


def test_the_evaluation_bundle_ships_numeric_wheels_for_the_lambda_platform(bundles):
    bundle = bundles["evaluate"]
    wheels = {p.name.split("-")[0]: (p / "WHEEL").read_text() for p in bundle.glob("*.dist-info") if p.name.startswith(("numpy", "scipy", "scikit_learn"))}
    assert set(wheels) == {"numpy", "scipy", "scikit_learn"}
    assert all("cp314" in tag and "manylinux" in tag and "x86_64" in tag for tag in wheels.values()), wheels


# -- the handlers, run from their bundles ------------------------------------------------------------------

DRIVER = textwrap.dedent('''
    import json, os, sys
    bundle, sdk = sys.argv[1], sys.argv[2]
    sys.path[:] = [bundle, sdk] + [p for p in sys.path if p.startswith(sys.base_prefix) and "site-packages" not in p]

    class Context:
        function_name = "rehearsal"; function_version = "$LATEST"; memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:rehearsal"
        aws_request_id = "rehearsal-1"; log_group_name = "/aws/lambda/rehearsal"; log_stream_name = "x"
        def get_remaining_time_in_millis(self): return 60000

    import handler
    event = json.loads(os.environ["REHEARSAL_EVENT"])
    try:
        result = {"ok": handler.handler(event, Context())}
    except Exception as exc:  # reported, then judged by the test
        result = {"error": type(exc).__name__, "message": str(exc)}
    outside = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)
                      and not m.__file__.startswith((bundle, sdk, sys.base_prefix))})
    print("REHEARSAL " + json.dumps({"result": result, "outside": outside}, default=str))
''')


@pytest.fixture(scope="module")
def runtime_sdk(tmp_path_factory) -> Path:
    """A folder holding only what the Lambda runtime adds to the standard library: boto3 and its dependencies."""
    import boto3

    site = Path(boto3.__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("runtime-sdk")
    for name in RUNTIME_SDK:
        (folder / name).symlink_to(site / name)
    return folder


@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def run_bundled(bundle: Path, sdk: Path, endpoint: str, event: dict, environment: dict[str, str]) -> dict:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **aws_env.OFFLINE_ENV,
           "AWS_ENDPOINT_URL": endpoint, "POWERTOOLS_DEV": "false", "REHEARSAL_EVENT": json.dumps(event), **environment}
    # -I: no user site, no PYTHON* variables; -S: no site-packages. The path is the bundle, the SDK, the stdlib.
    result = subprocess.run([sys.executable, "-I", "-S", "-c", DRIVER, str(bundle), str(sdk)], env=env, cwd=bundle,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REHEARSAL "))
    report = json.loads(line.removeprefix("REHEARSAL "))
    assert report["outside"] == [], f"modules loaded from outside the bundle: {report['outside']}"
    return report["result"]


@pytest.fixture(scope="module")
def deployed(moto_server):
    """What the handlers need, created in the moto server the subprocesses talk to."""
    import boto3

    clients = lambda service: boto3.client(service, endpoint_url=moto_server, region_name=aws_env.REGION)  # noqa: E731
    bucket = "sav-router-rehearsal"
    clients("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
    samples = (REPO / "sav_router" / "samples" / "annotations.jsonl").read_bytes()
    put = clients("s3").put_object(Bucket=bucket, Key="annotations/platform/export-1.jsonl", Body=samples)
    for table, key in (("ledger", "pk"), ("idempotency", "id")):
        clients("dynamodb").create_table(TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                                         AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    machine = clients("stepfunctions").create_state_machine(
        name="training", roleArn=f"arn:aws:iam::{aws_env.ACCOUNT}:role/sfn",
        definition=json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Succeed"}}}))["stateMachineArn"]
    queues = {name: clients("sqs").create_queue(QueueName=name)["QueueUrl"] for name in ("orders", "review", "intake-dlq")}
    clients("ssm").put_parameter(Name="/sav-router/routing-overrides", Value="{}", Type="String")
    return {"bucket": bucket, "etag": put["ETag"], "machine": machine, "queues": queues, "client": clients}


def drop_record(bucket: str, key: str, etag: str) -> dict:
    body = json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": bucket}, "object": {"key": key, "etag": etag}}})
    return {"Records": [{"messageId": "m1", "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}]}


def test_pure_python_handlers_import_and_run_from_their_bundles(bundles, runtime_sdk, moto_server, deployed):
    """A module or requirement missing from a bundle fails here, as it would at the first invocation."""
    bucket, queues = deployed["bucket"], deployed["queues"]
    sqs_record = {"Records": [{"messageId": "poison-1", "receiptHandle": "r", "body": "not json {", "attributes": {"ApproximateReceiveCount": "1"},
                               "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                               "eventSourceARN": f"arn:aws:sqs:{aws_env.REGION}:{aws_env.ACCOUNT}:intake", "awsRegion": aws_env.REGION}]}
    cases = {
        # WHEN the gate handles an annotation drop of the sample export (more rows than the minimum)
        "annotation_trigger": (drop_record(bucket, "annotations/platform/export-1.jsonl", deployed["etag"]),
                               {"LEDGER_TABLE": "ledger", "STATE_MACHINE_ARN": deployed["machine"], "MIN_NEW_ROWS": "10"}),
        "prepare_dataset": ({"execution_name": "rehearsal-1"},
                            {"ARTIFACTS_BUCKET": bucket, "RUN_PREFIX": "sav-router", "TEAM_LABELS": json.dumps({"orders": ["order_status"]})}),
        "shadow_prepare": ({"run_id": "sav-router-rehearsal-1"}, {"ARTIFACTS_BUCKET": bucket, "TRAFFIC_DAYS": "7", "MAX_SHADOW_REQUESTS": "100"}),
        "promotion": ({"Records": [{"body": json.dumps({"detail": {"ModelApprovalStatus": "Rejected", "ModelPackageArn": "x"}})}]},
                      {"ENDPOINT_NAME": "sav-router", "SAGEMAKER_ROLE_ARN": "r", "KMS_KEY_ARN": "k", "INSTANCE_TYPE": "ml.c5.xlarge",
                       "INSTANCE_COUNT": "1", "ROLLBACK_ALARMS": "[]", "ARTIFACTS_BUCKET": bucket}),
        "routing": (sqs_record, {"ENDPOINT_NAME": "sav-router", "ARTIFACTS_BUCKET": bucket, "OVERRIDES_PARAMETER": "/sav-router/routing-overrides",
                                 "TEAM_QUEUES": json.dumps({"orders": queues["orders"]}), "REVIEW_QUEUE_URL": queues["review"],
                                 "INTAKE_DLQ_URL": queues["intake-dlq"], "IDEMPOTENCY_TABLE": "idempotency"}),
        "shadow_compare": ({"run_id": "sav-router-no-such-run"}, {"ARTIFACTS_BUCKET": bucket, "APPROVAL_MODE": "manual"}),
    }
    assert set(cases) == set(PURE_PYTHON)
    results = {name: run_bundled(bundles[name], runtime_sdk, moto_server, event, {"POWERTOOLS_SERVICE_NAME": name, **env})
               for name, (event, env) in cases.items()}
    # THEN each ran its real logic with nothing but its bundle and the runtime's SDK
    assert results["annotation_trigger"]["ok"]["started"] is True
    assert results["prepare_dataset"]["ok"]["rows"] > 100 and results["prepare_dataset"]["ok"]["run_id"].startswith("sav-router-rehearsal-1")
    assert results["shadow_prepare"]["ok"]["count"] == 0  # no traffic logged yet
    assert results["promotion"]["ok"]["action"] == "none"
    assert results["routing"]["ok"] == {"batchItemFailures": []}  # the poison message went to the DLQ, with its reason
    dead = deployed["client"]("sqs").receive_message(QueueUrl=queues["intake-dlq"], MessageAttributeNames=["All"])["Messages"]
    assert dead[0]["Body"] == "not json {"
    # shadow_compare imported fine and failed on the missing run's data, as it would on AWS
    assert results["shadow_compare"].get("error") in ("NoSuchKey", "ClientError"), results["shadow_compare"]
    started = deployed["client"]("stepfunctions").list_executions(stateMachineArn=deployed["machine"])["executions"]
    assert [e["name"] for e in started] == ["annotations-g0"]
