"""CloudFormation custom resource: on stack deletion, remove what the runtime created (`sav_router.aws.teardown`).

Create and Update do nothing. Delete removes the endpoint, endpoint configs, models and model package versions
named in the resource's properties; a failure is reported to CloudFormation (the stack deletion stops with the
reason, and a retried deletion finishes the job), never swallowed: an endpoint left behind bills around the clock.
"""

from __future__ import annotations

import json
import urllib.request

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.settings import TeardownSettings
from sav_router.aws.teardown import remove_runtime_resources

logger = Logger()


def respond(event: dict, status: str, reason: str = "", data: dict | None = None) -> None:
    body = json.dumps({
        "Status": status, "Reason": reason[:1000], "PhysicalResourceId": event.get("PhysicalResourceId") or event["LogicalResourceId"],
        "StackId": event["StackId"], "RequestId": event["RequestId"], "LogicalResourceId": event["LogicalResourceId"], "Data": data or {},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - CloudFormation's pre-signed https URL
        pass


def act(event: dict, sagemaker=None) -> dict:
    if event["RequestType"] != "Delete":
        return {}
    props = event.get("ResourceProperties", {})
    return remove_runtime_resources(
        sagemaker or boto3.client("sagemaker"), endpoint_name=props.get("EndpointName"), run_model_prefix=props.get("RunModelPrefix"),
        model_package_group=props.get("ModelPackageGroupName"),
    )


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    TeardownSettings.from_environ()  # no variables: what to remove comes with the request
    try:
        removed = act(event)
    except Exception as exc:  # noqa: BLE001 - reported to CloudFormation with its reason
        logger.exception("teardown failed")
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
        return {"status": "FAILED"}
    logger.info("teardown", extra={"request": event["RequestType"], **{k: len(v) for k, v in removed.items()}})
    respond(event, "SUCCESS", data={k: str(len(v)) for k, v in removed.items()})
    return {"status": "SUCCESS", "removed": removed}
