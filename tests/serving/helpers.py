"""Start and stop a real server process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "SAV_ROUTER_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, *args], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until_ready(process: subprocess.Popen, base_url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{base_url}/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not answer /ping in time")


def stop(process: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str]:
    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output


def serve_args(model, port, *extra) -> list[str]:
    return ["-m", "sav_router.cli", "serve", "--model", str(model), "--port", str(port), "--host", "127.0.0.1", *extra]


@contextmanager
def clean_server(model, *extra: str) -> Iterator[dict]:
    """A `serve` process on a free loopback port for the block ({"base", "port", "process"}); stopped afterwards, its
    output printed, and no Python traceback allowed in it (no client that went away, timed out or was cut off broke it)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_process(serve_args(model, port, *extra))
    try:
        wait_until_ready(process, base)
        yield {"base": base, "port": port, "process": process}
    finally:
        _, output = stop(process)
        print(output[-3000:])
        assert "Traceback" not in output and "Exception in ASGI application" not in output, output[-5000:]


def post_lines_in_background(base: str, lines: str, answer: dict, *, timeout: float) -> threading.Thread:
    """POST a JSON Lines body from another thread; `answer` gets status, body and the time it came back."""
    def in_flight():
        response = httpx.post(f"{base}/invocations", content=lines, headers={"Content-Type": "application/jsonlines"}, timeout=timeout)
        answer.update(status=response.status_code, text=response.text, body=response.content, at=time.monotonic())

    client = threading.Thread(target=in_flight)
    client.start()
    return client
