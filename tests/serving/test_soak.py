"""A short run of the soak script (benchmarks/soak.py runs the same for minutes)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_soak():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("soak", BENCHMARKS / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_no_errors_no_leak_and_a_clean_exit(serving_bundle, tmp_path):
    if importlib.util.find_spec("locust") is None:  # never imported here: locust monkey-patches the process with gevent
        pytest.skip("locust not installed")
    soak = load_soak()
    result = soak.soak(serving_bundle, backend="torch", seconds=8, users=5, rate=0.0, threads=1, output=tmp_path, max_growth_mb=64, latency_ratio=1.5)
    assert result["requests"] > 50 and result["checks"]["no_errors"], result
    assert result["checks"]["memory_bounded"] and result["checks"]["clean_shutdown"], result
    assert math.isfinite(result["p99_first_third_ms"]) and math.isfinite(result["p99_last_third_ms"])
