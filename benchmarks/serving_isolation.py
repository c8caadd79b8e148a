"""One client's huge request vs everyone else: /ping latency, a small request beside it, and after the client gives up.

    python benchmarks/serving_isolation.py --model BUNDLE [--instances 40000] [--seconds 3] [--empty]

Starts `sav-router serve` (the code on PYTHONPATH) on a free 127.0.0.1 port with default limits,
sends one POST of N instances, pings /ping every 50 ms meanwhile, times one small request beside
it; then sends the same huge POST with a client that gives up after 0.5 s and times the next small
request. Prints the figures (issue 11 item 4; the README's serving section quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx

TEXTS = ["where is my parcel", "my refund has not arrived", "the screen is broken after a week", "i cannot log in to my account"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--instances", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--empty", action="store_true", help="empty texts: no model work, only parsing, deciding and encoding")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SAV_ROUTER_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "sav_router.cli", "serve", "--model", args.model, "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = json.dumps({"instances": [{"id": i, "text": "" if args.empty else TEXTS[i % len(TEXTS)]} for i in range(args.instances)]}).encode()
        huge = {}

        def send_huge():
            start = time.monotonic()
            try:
                response = httpx.post(f"{base}/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=600)
                huge.update(status=response.status_code)
            except httpx.HTTPError as exc:
                huge.update(status=type(exc).__name__)
            huge["seconds"] = time.monotonic() - start

        worker = threading.Thread(target=send_huge)
        worker.start()
        time.sleep(0.2)
        pings = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            start = time.monotonic()
            httpx.get(f"{base}/ping", timeout=60)
            pings.append(time.monotonic() - start)
            time.sleep(0.05)
        start = time.monotonic()
        httpx.post(f"{base}/invocations", json={"id": "s", "text": TEXTS[0]}, timeout=600)
        beside = time.monotonic() - start
        worker.join()
        try:
            httpx.post(f"{base}/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=httpx.Timeout(600, read=0.5))
        except httpx.ReadTimeout:
            pass
        start = time.monotonic()
        httpx.post(f"{base}/invocations", json={"id": "n", "text": TEXTS[1]}, timeout=600)
        after = time.monotonic() - start
        print(f"{args.instances} instances ({len(body) / 1e6:.1f} MB): /ping n={len(pings)} p50={statistics.median(pings) * 1000:.0f} ms "
              f"max={max(pings) * 1000:.0f} ms; small request beside it {beside:.2f} s; huge request {huge['status']} in {huge['seconds']:.1f} s; "
              f"small request after a client gave up {after:.2f} s")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
