"""Environment variable names, in one place, and how configuration is resolved.

Resolution order everywhere: explicit argument > environment variable > default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# sav-router's own settings
BASE_MODEL = "SAV_ROUTER_BASE_MODEL"  # HF model folder or id used when --base-model is absent
NUM_THREADS = "SAV_ROUTER_NUM_THREADS"  # torch intra-op threads (default: usable cores)
DEVICE = "SAV_ROUTER_DEVICE"  # torch device for training: cpu | cuda | cuda:N (default: cuda when available)
WORKSPACE = "SAV_ROUTER_WORKSPACE"  # local workspace folder (registry, traffic, annotations)
OUT_OF_SCOPE_LABEL = "SAV_ROUTER_OUT_OF_SCOPE_LABEL"  # name of the reserved "none of these" answer (default out_of_scope)
IMAGE_URI = "SAV_ROUTER_IMAGE_URI"  # `python app.py` / `cdk deploy`: overrides cdk.json's imageUri (CI builds and pushes the image first)
SERVING_IMAGE_URI = "SAV_ROUTER_SERVING_IMAGE_URI"  # the same for servingImageUri (`docker build --target serving`, pushed first)

# The HTTP server (a SageMaker container is configured only through its environment)
BACKEND = "SAV_ROUTER_BACKEND"  # torch | onnx | onnx-int8 (default: the bundle's recorded choice)
UNCERTIFIED_BACKEND = "SAV_ROUTER_UNCERTIFIED_BACKEND"  # 1: serve a backend the bundle's promise was not computed on (refused otherwise)
HOST = "SAV_ROUTER_HOST"  # bind address of the image's `serve` (default 0.0.0.0 there, 127.0.0.1 for the CLI)
MAX_PAYLOAD_MB = "SAV_ROUTER_MAX_PAYLOAD_MB"
MAX_BATCH_SIZE = "SAV_ROUTER_MAX_BATCH_SIZE"
MAX_WAIT_MS = "SAV_ROUTER_MAX_WAIT_MS"
MAX_CONCURRENT_TRANSFORMS = "SAV_ROUTER_MAX_CONCURRENT_TRANSFORMS"
MAX_INSTANCES = "SAV_ROUTER_MAX_INSTANCES"  # requests (instances or lines) in one POST
MAX_TOKENS = "SAV_ROUTER_MAX_TOKENS"  # token budget of one POST (upper bound: characters + 2 per text, capped at max_length)
DEADLINE_S = "SAV_ROUTER_DEADLINE_S"  # seconds one POST may take before a 504 (its remaining work is dropped)
HEADER_TIMEOUT_S = "SAV_ROUTER_HEADER_TIMEOUT_S"  # a connection must send its request headers within this
BODY_TIMEOUT_S = "SAV_ROUTER_BODY_TIMEOUT_S"  # and its body within this (408 otherwise)
MAX_CONNECTIONS = "SAV_ROUTER_MAX_CONNECTIONS"  # open connections; beyond, the oldest idle one is closed
GRACEFUL_TIMEOUT_S = "SAV_ROUTER_GRACEFUL_TIMEOUT_S"  # on SIGTERM, in-flight requests get this long; the rest a JSON 503, and the process exits within it

# SageMaker training and serving contract
SM_MODEL_DIR = "SM_MODEL_DIR"
SM_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
SM_CHANNEL_PREFIX = "SM_CHANNEL_"
SM_HPS = "SM_HPS"
SAGEMAKER_BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
SAGEMAKER_PROGRAM_ROOT = "SAV_ROUTER_OPT_ML"  # root of the /opt/ml layout (tests point it at a temp dir)

# The Lambda functions (written by infra/ through sav_router.aws.settings, read back by lambdas/)
ENDPOINT_NAME = "ENDPOINT_NAME"
ENDPOINT_KIND = "ENDPOINT_KIND"  # "provisioned" or "serverless" (sav_router.aws.settings.ENDPOINT_KINDS)
ARTIFACTS_BUCKET = "ARTIFACTS_BUCKET"
TEAM_QUEUES = "TEAM_QUEUES"  # JSON {team: queue URL}
TEAMS_WITH_QUEUE = "TEAMS_WITH_QUEUE"  # JSON [team, ...]
REVIEW_QUEUE_URL = "REVIEW_QUEUE_URL"
INTAKE_DLQ_URL = "INTAKE_DLQ_URL"
IDEMPOTENCY_TABLE = "IDEMPOTENCY_TABLE"
IDEMPOTENCY_TTL_SECONDS = "IDEMPOTENCY_TTL_SECONDS"
OVERRIDES_PARAMETER = "OVERRIDES_PARAMETER"  # SSM parameter name of the operator overrides
OVERRIDES_TTL_SECONDS = "OVERRIDES_TTL_SECONDS"
AUDIT_SHARE = "AUDIT_SHARE"
LEDGER_TABLE = "LEDGER_TABLE"
STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
MIN_NEW_ROWS = "MIN_NEW_ROWS"
RUN_PREFIX = "RUN_PREFIX"
TEAM_LABELS = "TEAM_LABELS"  # JSON {team: [label, ...]}
TARGET_PRECISION = "TARGET_PRECISION"
MIN_COVERAGE = "MIN_COVERAGE"
TRAFFIC_DAYS = "TRAFFIC_DAYS"
MAX_SHADOW_REQUESTS = "MAX_SHADOW_REQUESTS"
APPROVAL_MODE = "APPROVAL_MODE"
SAGEMAKER_ROLE_ARN = "SAGEMAKER_ROLE_ARN"
KMS_KEY_ARN = "KMS_KEY_ARN"
INSTANCE_TYPE = "INSTANCE_TYPE"
INSTANCE_COUNT = "INSTANCE_COUNT"
SERVERLESS_CONFIG = "SERVERLESS_CONFIG"  # JSON ServerlessConfig of the production variant (serverless endpoints)
ROLLBACK_ALARMS = "ROLLBACK_ALARMS"  # JSON [alarm name, ...]
SUBNET_IDS = "SUBNET_IDS"  # JSON [subnet id, ...]
SECURITY_GROUP_IDS = "SECURITY_GROUP_IDS"  # JSON [security group id, ...]
BAKING_SECONDS = "BAKING_SECONDS"
DRIFT_DAYS = "DRIFT_DAYS"  # days of logged decisions the drift monitor tests
DRIFT_ALPHA = "DRIFT_ALPHA"  # its false-alarm level
# Powertools (set by infra/lambda_function.py on every function)
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"


def resolve(explicit: T | None, env_name: str, default: T, convert: Callable[[str], T] | None = None) -> T:
    """Return `explicit` if given, else the environment variable (converted), else `default`."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(env_name)
    if raw is None or raw == "":
        return default
    if convert is None:
        return raw  # type: ignore[return-value]
    try:
        return convert(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {env_name}={raw!r} is invalid: {exc}") from exc


def usable_cores() -> int:
    """CPU cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
