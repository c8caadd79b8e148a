"""The console under test: a real uvicorn server (the CLI in a subprocess) and system Chromium through Playwright.

One browser per session, one server per source (the local workspace, the AWS
queue and bucket in a moto server). Screenshots go to runs/console-screenshots/.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, make_texts, train_toy_bundle

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "runs" / "console-screenshots"
PASSWORDS = {"ana": "ana-password-1", "bob": "bob-password-2", "root": "root-password-3"}
ROLES = {"ana": "reviewer", "bob": "reviewer", "root": "admin"}
XSS = '<script>document.title="pwned"</script> my parcel is still not here'
MODEL_V = "v-test"


def queue_item(request_id, text, *, top_k, audit=False, reasons=("low_confidence",), model_version=MODEL_V):
    """What `route` queues (and the routing Lambda's envelope carries): a decision record plus the text."""
    label, confidence = top_k[0]
    return {
        "id": request_id, "decision": "route" if audit else "escalate", "label": label, "team": label, "confidence": confidence,
        "reasons": [] if audit else list(reasons), "top_k": [{"label": name, "score": score} for name, score in top_k],
        "model_version": model_version, "text": text, "audit": audit, "queued_at": "2026-11-30T10:00:00+00:00",
    }


# Escalations first, in queue order, then one audit sample: the browser tests know what comes when.
ITEMS = [
    queue_item("e1", "my parcel never arrived and tracking is stuck", top_k=[("delivery", 0.61), ("refund", 0.22), ("warranty", 0.08)]),
    queue_item("e2", "refund still not on my card after two weeks", top_k=[("refund", 0.58), ("account", 0.25), ("delivery", 0.1)], reasons=("ambiguous",)),
    queue_item("e3", "the kettle stopped working, is it under warranty", top_k=[("warranty", 0.55), ("refund", 0.3), ("delivery", 0.1)]),
    queue_item("e4", "what will the weather be like tomorrow", top_k=[("account", 0.4), ("delivery", 0.35), ("refund", 0.2)], reasons=("out_of_distribution",)),
    queue_item("e5", XSS, top_k=[("delivery", 0.5), ("refund", 0.4), ("account", 0.05)]),
    queue_item("a1", "cannot log in, password reset mail never came", top_k=[("account", 0.97), ("delivery", 0.01), ("refund", 0.01)], audit=True),
    queue_item("e6", "where is my order, courier says delivered", top_k=[("delivery", 0.52), ("refund", 0.3), ("warranty", 0.1)]),
    queue_item("e7", "money back for the broken blender please", top_k=[("refund", 0.5), ("warranty", 0.45), ("delivery", 0.02)]),
    queue_item("e8", "email change locked my account", top_k=[("account", 0.6), ("refund", 0.2), ("delivery", 0.1)]),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sav_router.cli", *args], input=stdin, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def add_users(workspace: Path) -> None:
    for name, role in ROLES.items():
        done = cli("console", "users", "add", name, "--role", role, "--workspace", str(workspace), stdin=PASSWORDS[name] + "\n")
        assert done.returncode == 0, done.stderr


class ConsoleServer:
    """`sav-router console ...` in a subprocess on a free port; stderr kept to check what it logs."""

    def __init__(self, args: list[str], *, env: dict, log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> "ConsoleServer":
        self.log = self.log_path.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sav_router.cli", "console", *self.args, "--port", str(self.port)],
            cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("console exited: " + self.log_path.read_text())
            try:
                urllib.request.urlopen(self.url + "/login", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("console did not start: " + self.log_path.read_text())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a connection still open: do not hang the suite
                self.process.kill()
                self.process.wait(timeout=10)
            self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8")


def server_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("SAV_ROUTER_WORKSPACE", None)
    return env


@pytest.fixture(scope="module")  # torn down after each module: Playwright's loop must not outlive the console tests (asyncio.run elsewhere)
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def local_workspace(tmp_path_factory, tiny_base_model, toy_annotations, tiny_bundle) -> dict:
    """A workspace with a production model, a candidate, routed traffic and a known review queue."""
    from sav_router.core.bundle import read_manifest
    from sav_router.data.annotations import Record
    from sav_router.loop.observer import route_stream
    from sav_router.model.router import Router
    from sav_router.core.jsonio import append_jsonl
    from sav_router.loop.workspace import Workspace

    root = tmp_path_factory.mktemp("console")
    candidate = train_toy_bundle(tiny_base_model, toy_annotations, root / "candidate", epochs=1, seed=7)
    workspace = Workspace(root / "ws").ensure()
    production = workspace.register(tiny_bundle)
    candidate_version = workspace.register(candidate)
    workspace.promote(production)
    version = read_manifest(tiny_bundle).model_version
    items = [dict(item, model_version=version) for item in ITEMS]
    append_jsonl(workspace.path("review", "queue.jsonl"), items)
    texts = [t for label in ("delivery", "refund", "warranty", "account") for t in make_texts(label, 8, seed=91)]
    texts += ["weather football recipe", "poem about the weather"]
    records = [Record(text=text, label=None, id=f"t{i}") for i, text in enumerate(texts)]
    list(route_stream(records, Router.load(workspace.production_dir()), workspace=workspace, audit_share=0.0, seed=3))
    # `route` queues its escalations after the known items; they are real decisions of the tiny model
    add_users(workspace.root)
    return {"root": workspace.root, "workspace": workspace, "production": production, "candidate": candidate_version, "texts": [i["text"] for i in items] + texts}


def read_answers(workspace: Path) -> list[dict]:
    rows = []
    for path in sorted((workspace / "annotations").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows
