"""The image's `train` and `serve` entry points, run as plain Python against a temporary /opt/ml."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "training_image"


def entry(name: str, opt_ml: Path, extra_env: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SAV_ROUTER_OPT_ML": str(opt_ml), "SAV_ROUTER_NUM_THREADS": "1", **(extra_env or {})}
    for key in [k for k in env if k.startswith("SM_")]:
        env.pop(key)  # only the /opt/ml layout, as in a container
    return env, [sys.executable, str(IMAGE / name)]


def make_opt_ml(root: Path, hyperparameters: dict[str, str], data: Path | None) -> Path:
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    if data is not None:
        channel = root / "input" / "data" / "train"
        channel.mkdir(parents=True)
        shutil.copy(data, channel / "annotations.jsonl")
    return root


def test_train_then_serve_as_sagemaker_runs_them(tiny_base_model, toy_annotations, tmp_path):
    """A training job writes /opt/ml/model; an endpoint container serves that same folder."""
    # SageMaker passes every hyperparameter as a string
    hyperparameters = {"base_model": tiny_base_model, "epochs": "1", "batch_size": "32", "learning_rate": "0.001", "head_learning_rate": "0.01"}
    opt_ml = make_opt_ml(tmp_path / "opt_ml", hyperparameters, toy_annotations)
    env, command = entry("train", opt_ml)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((opt_ml / "model" / "router.json").read_text())
    assert sorted(manifest["labels"]) == ["account", "delivery", "refund", "warranty"]
    assert manifest["training"]["hyperparameters"]["epochs"] == 1
    assert not (opt_ml / "output" / "failure").exists()

    port = _free_port()
    env, command = entry("serve", opt_ml, {"SAGEMAKER_BIND_TO_PORT": str(port), "SAV_ROUTER_HOST": "127.0.0.1"})
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read() if process.poll() is not None else "timeout"
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        response = httpx.post(f"{base}/invocations", json={"instances": [{"id": "x", "text": "refund my money"}]})
        assert response.status_code == 200
        assert response.json()["predictions"][0]["model_version"] == manifest["model_version"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


def test_train_failure_is_written_to_the_failure_file(tmp_path):
    opt_ml = make_opt_ml(tmp_path / "opt_ml", {"epochs": "1"}, data=None)
    env, command = entry("train", opt_ml)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    failure = (opt_ml / "output" / "failure").read_text()
    assert "no 'train' input channel" in failure


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
