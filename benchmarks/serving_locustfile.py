"""Locust user for the serving benchmark and soak: single routing requests to /invocations.

Closed loop by default (each user sends its next request as soon as the last
one is answered); SAV_LOAD_RATE=N paces each user to N requests/s instead, and
SAV_LOAD_THINK_MS=T makes each user wait T ms after each answer.
Texts come from SAV_LOAD_TEXTS (a JSON list in a file). Loopback targets only:
the host is checked before any request is sent.
"""

from __future__ import annotations

import json
import os
import random
from urllib.parse import urlparse

from locust import FastHttpUser, constant, constant_throughput, task

TEXTS = json.loads(open(os.environ["SAV_LOAD_TEXTS"], encoding="utf-8").read())
RATE = float(os.environ.get("SAV_LOAD_RATE", "0"))
THINK_S = float(os.environ.get("SAV_LOAD_THINK_MS", "0")) / 1000


class RoutingClient(FastHttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(THINK_S)

    def on_start(self) -> None:
        host = urlparse(self.host).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise RuntimeError(f"load tests target the loopback only, not {host}")
        self.random = random.Random()

    @task
    def route_one(self) -> None:
        body = {"id": str(self.random.randrange(1 << 30)), "text": self.random.choice(TEXTS)}
        with self.client.post("/invocations", json=body, catch_response=True, name="/invocations") as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif "decision" not in (response.json() or {}):
                response.failure("no decision in the answer")
