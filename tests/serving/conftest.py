"""A small trained bundle shared by the serving tests (tiny BERT, four labels, seconds to train)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def train_tiny_bundle(base_model: str, annotations: Path, out: Path, serving_backend: str = "torch") -> Path:
    """Certified on torch by default: the serving tests' bundle has no ONNX export until `export-onnx` makes one
    (`onnx_bundle`); bundles certified on ONNX, as `train` makes by default, are tests/conftest.py's `tiny_bundle`."""
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    config = TrainConfig(base_model=base_model, epochs=2, progress=False, learning_rate=1e-3, head_learning_rate=1e-2, batch_size=16,
                         serving_backend=serving_backend)
    train_bundle([annotations], out, config=config, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def serving_bundle(tiny_base_model, toy_annotations, tmp_path_factory) -> Path:
    """A bundle trained once; tests that change it work on a copy (`bundle_copy`)."""
    return train_tiny_bundle(tiny_base_model, toy_annotations, tmp_path_factory.mktemp("serving") / "bundle")


@pytest.fixture(scope="session")
def onnx_bundle(serving_bundle, toy_annotations, tmp_path_factory) -> Path:
    """A copy of the bundle with fp32 and int8 ONNX exports checked on the toy labeled set."""
    from sav_router.cli import main

    bundle = tmp_path_factory.mktemp("serving-onnx") / "bundle"
    shutil.copytree(serving_bundle, bundle)
    assert main(["export-onnx", str(bundle), "--check", str(toy_annotations), "--threads", "1"]) == 0
    return bundle


@pytest.fixture
def bundle_copy(serving_bundle, tmp_path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(serving_bundle, bundle)
    return bundle


@pytest.fixture(scope="session")
def router(serving_bundle):
    from sav_router.model.router import Router

    return Router.load(serving_bundle, backend="torch", num_threads=1)


@pytest.fixture(scope="session")
def app_client(router):
    """The app in process (startup and shutdown run), over the real ASGI stack."""
    from fastapi.testclient import TestClient

    from sav_router.serving.app import create_app
    from sav_router.serving.settings import ServeSettings

    with TestClient(create_app(router, ServeSettings(max_payload_mb=1)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def live_server(router):
    """The app under uvicorn on a free loopback port, in a background thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from sav_router.serving.app import create_app
    from sav_router.serving.settings import ServeSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(router, ServeSettings(max_payload_mb=1)), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
