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
LOG_LEVEL = "SAV_ROUTER_LOG_LEVEL"
OUT_OF_SCOPE_LABEL = "SAV_ROUTER_OUT_OF_SCOPE_LABEL"  # name of the reserved "none of these" answer (default out_of_scope)

# The HTTP server (a SageMaker container is configured only through its environment)
BACKEND = "SAV_ROUTER_BACKEND"  # torch | onnx | onnx-int8 (default: the bundle's recorded choice)
HOST = "SAV_ROUTER_HOST"  # bind address of the image's `serve` (default 0.0.0.0 there, 127.0.0.1 for the CLI)
MAX_PAYLOAD_MB = "SAV_ROUTER_MAX_PAYLOAD_MB"
MAX_BATCH_SIZE = "SAV_ROUTER_MAX_BATCH_SIZE"
MAX_WAIT_MS = "SAV_ROUTER_MAX_WAIT_MS"
MAX_CONCURRENT_TRANSFORMS = "SAV_ROUTER_MAX_CONCURRENT_TRANSFORMS"

# SageMaker training and serving contract
SM_MODEL_DIR = "SM_MODEL_DIR"
SM_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
SM_CHANNEL_PREFIX = "SM_CHANNEL_"
SM_HPS = "SM_HPS"
SM_NUM_CPUS = "SM_NUM_CPUS"
SAGEMAKER_BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
SAGEMAKER_PROGRAM_ROOT = "SAV_ROUTER_OPT_ML"  # root of the /opt/ml layout (tests point it at a temp dir)


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
