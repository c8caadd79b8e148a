"""Offline AWS test environment shared by tests/infra and tests/lambdas: fake credentials, no network."""

from __future__ import annotations

import os

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sav-router:test"

OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}


def apply() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    for key in ("AWS_PROFILE",):
        os.environ.pop(key, None)
