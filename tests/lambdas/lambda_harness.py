"""Helpers of the Lambda handler tests (imported by name: conftest modules are not importable)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import aws_env

REPO = Path(__file__).resolve().parents[2]
BUCKET = "sav-router-artifacts-test"


class FakeLambdaContext:
    function_name = "sav-router-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{aws_env.REGION}:{aws_env.ACCOUNT}:function:sav-router-test"
    log_group_name = "/aws/lambda/sav-router-test"
    log_stream_name = "test"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def load_handler_module(name: str):
    """Import `lambdas/<name>/handler.py` as a new module (module-level clients read the current env)."""
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_{uuid.uuid4().hex}", REPO / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqs_event(bodies: list[str], *, message_ids: list[str] | None = None) -> dict:
    ids = message_ids or [str(uuid.uuid4()) for _ in bodies]
    return {"Records": [
        {"messageId": mid, "receiptHandle": f"rh-{mid}", "body": body, "attributes": {"ApproximateReceiveCount": "1"},
         "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
         "eventSourceARN": f"arn:aws:sqs:{aws_env.REGION}:{aws_env.ACCOUNT}:intake", "awsRegion": aws_env.REGION}
        for mid, body in zip(ids, bodies, strict=True)
    ]}


def drain(sqs, url: str) -> list[dict]:
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def bodies(messages: list[dict]) -> list[dict]:
    return [json.loads(m["Body"]) for m in messages]
