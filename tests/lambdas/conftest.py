"""Lambda handler tests: moto for every AWS call, a fake LambdaContext, handlers loaded fresh per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "infra"))  # aws_env, fake_sagemaker

import aws_env  # noqa: E402
from lambda_harness import FakeLambdaContext  # noqa: E402

aws_env.apply()


@pytest.fixture
def context() -> FakeLambdaContext:
    return FakeLambdaContext()
