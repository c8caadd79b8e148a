"""Issue 11 item 4 against a real `sav-router serve` process on 127.0.0.1: one client cannot hurt the others.

Bounded on purpose: each scenario lasts a few seconds; the server's limits are set low
(`--deadline 10 --header-timeout 1 --body-timeout 1 --max-connections 16`) so they are reached quickly.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time

import httpx
import pytest

from tests.conftest import make_texts

from .helpers import clean_server

LIMITS = ["--deadline", "10", "--header-timeout", "1", "--body-timeout", "1", "--max-connections", "16", "--max-instances", "50000", "--threads", "1"]


@pytest.fixture(scope="module")
def server(serving_bundle):
    with clean_server(serving_bundle, *LIMITS) as running:
        yield running


def big_body(n: int) -> bytes:
    texts = make_texts("refund", 200, seed=3) + make_texts("delivery", 200, seed=3)
    return json.dumps({"instances": [{"id": i, "text": texts[i % len(texts)]} for i in range(n)]}).encode()


def pings_during(base: str, seconds: float) -> list[float]:
    latencies = []
    end = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < end:
            start = time.monotonic()
            assert client.get(f"{base}/ping").status_code == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.05)
    return latencies


def test_ping_answers_within_2s_while_a_huge_request_keeps_the_model_busy(server):
    base = server["base"]
    outcome = {}

    def huge():
        response = httpx.post(f"{base}/invocations", content=big_body(40_000), headers={"Content-Type": "application/json"}, timeout=30)
        outcome.update(status=response.status_code, body=response.json())

    worker = threading.Thread(target=huge)
    worker.start()
    time.sleep(0.2)
    latencies = pings_during(base, 3.0)
    small_start = time.monotonic()
    small = httpx.post(f"{base}/invocations", json={"id": "s", "text": "where is my parcel courier"}, timeout=10)
    small_seconds = time.monotonic() - small_start
    worker.join(30)
    print(f"/ping under load: n={len(latencies)} p50={statistics.median(latencies) * 1000:.0f} ms max={max(latencies) * 1000:.0f} ms; "
          f"a small request beside it: {small_seconds * 1000:.0f} ms; the huge one: {outcome.get('status')}")
    assert max(latencies) < 2.0 and len(latencies) >= 10
    assert small.status_code == 200 and small.json()["id"] == "s"
    # the 40,000 instances either finished or hit the 10 s deadline: a JSON 504, their remaining work dropped
    assert outcome["status"] == 200 or (outcome["status"] == 504 and outcome["body"]["code"] == "deadline_exceeded")


def test_a_client_that_gives_up_frees_the_model(server):
    base = server["base"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/invocations", content=big_body(40_000), headers={"Content-Type": "application/json"}, timeout=httpx.Timeout(10, read=0.5))
    start = time.monotonic()
    response = httpx.post(f"{base}/invocations", json={"id": "n", "text": "my refund money"}, timeout=10)
    assert response.status_code == 200 and time.monotonic() - start < 2.0


def test_too_many_instances_is_a_json_413(server):
    body = json.dumps({"instances": [{"text": ""}] * 60_000}).encode()
    response = httpx.post(f"{server['base']}/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413 and response.json()["code"] == "too_many_instances"


def test_batch_transform_payload_of_json_lines_still_works(server):
    # SplitType=Line, BatchStrategy=MultiRecord: a mini-batch of lines, one answer line per input line, in order
    texts = make_texts("warranty", 150, seed=5)
    lines = "".join(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n" for i in range(5_000))
    response = httpx.post(f"{server['base']}/invocations", content=lines, headers={"Content-Type": "application/jsonlines"}, timeout=60)
    answer = response.text.splitlines()
    assert response.status_code == 200 and len(answer) == 5_000 and [json.loads(line)["id"] for line in answer] == list(range(5_000))


@pytest.mark.parametrize("text", ["a", "x" * 56, "x" * 171])
def test_a_full_batch_transform_payload_is_within_the_default_limits(text):
    # GIVEN the pipeline's MaxPayloadInMB filled with the shortest valid lines, or typical ones (85-200 bytes)
    from sav_router.serving.app import parse_checked
    from sav_router.serving.protocol import JSONLINES
    from sav_router.serving.settings import MB, TRANSFORM_MAX_PAYLOAD_MB, ServeSettings

    line = json.dumps({"id": "1", "text": text}) + "\n"
    count = TRANSFORM_MAX_PAYLOAD_MB * MB // len(line)
    # WHEN the server parses it with its default limits
    parsed = parse_checked((line * count).encode(), JSONLINES, ServeSettings(), max_length=64)
    # THEN every request is accepted: no payload the pipeline sends is refused as too many instances
    assert len(parsed.items) == count and all(item.error is None for item in parsed.items)


def raw(port: int, data: bytes, *, wait: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_uvicorns_own_400_is_json(server):
    answer = raw(server["port"], b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert json.loads(body)["code"] == "invalid_http"


def test_slow_headers_are_cut_and_cannot_lock_out_the_health_check(server):
    # GIVEN 40 clients that never finish their headers (the connection cap is 16)
    sockets = []
    for _ in range(40):
        sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=5)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    # THEN the health check still gets in at once
    assert max(pings_during(server["base"], 0.5)) < 2.0
    # AND after the header timeout every slow connection has been closed by the server
    time.sleep(1.5)
    closed = 0
    for sock in sockets:
        try:
            closed += sock.recv(1024) == b""
        except (ConnectionResetError, TimeoutError):
            closed += 1
        sock.close()
    assert closed == len(sockets)


def test_a_slow_body_is_a_json_408_and_a_cut_body_logs_no_traceback(server):
    answer = raw(server["port"], b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te", wait=4)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and json.loads(body)["code"] == "body_timeout"
    with socket.create_connection(("127.0.0.1", server["port"])) as sock:  # cut off mid-body: the fixture checks the log
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"text\": ")
    time.sleep(0.3)
    assert httpx.get(f"{server['base']}/ping").status_code == 200
