"""Open-loop load against `sav-router serve`: requests sent on a fixed schedule, latency from the scheduled time.

    python benchmarks/serving_openloop.py --model BUNDLE [--backends certified torch] [--rates 50 100 200] [--seconds 60] [--threads 2]

A closed-loop generator (wrk, locust) waits for each answer before sending again, so
when the server slows down it sends less, and queueing hides in a lower rate. Here
request i is due at t0 + i / rate whatever happened before, and its latency runs
from that due time to the last byte of its answer: time spent queued, in the
generator or in the server, is counted (no coordinated omission). The client is a
small asyncio HTTP/1.1 keep-alive pool (no library), light enough to share the
machine with the server; what it costs is still taken from the server's cores,
and the figures say so.

Also measured per backend: start-to-first-answer, from launching the server process
to the first decision received (imports, model load, first inference), and the
server's resident memory after the runs. Request bodies: Banking77 test texts
(`../shared/datasets/banking77/test.csv`, read in place), one `{"id", "text"}` per request.
Not a test: numbers depend on the machine and its load (reported with them).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving import matmul_peak_gflops  # noqa: E402  (one measure of the machine's speed for both benchmarks)

BANKING77 = REPO.parent / "shared" / "datasets" / "banking77"


def texts_for_load() -> list[str]:
    path = BANKING77 / "test.csv"
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            return [row["text"] for row in csv.DictReader(handle)]
    return ["my parcel never arrived", "refund still not on my card", "password reset locked out", "the screen is broken"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Pool:
    """Keep-alive HTTP/1.1 connections to one host; a request takes an idle one or opens a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post(self, body: bytes, timeout: float) -> int:
        reader, writer = self.idle.pop() if self.idle else await self._open()
        try:
            head = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            writer.write(head + body)
            status, length = await asyncio.wait_for(self._read_head(reader), timeout)
            await asyncio.wait_for(reader.readexactly(length), timeout)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return status

    async def _open(self):
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
        while True:  # skip interim 1xx answers (the server sends 102 Processing for long requests)
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            if status >= 200:
                break
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        return status, int(headers.get("content-length", "0"))

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def open_loop(port: int, rate: float, seconds: float, bodies: list[bytes], timeout: float = 10.0) -> dict:
    pool = Pool(port)
    total = int(rate * seconds)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    def quiet_reset(loop_, context: dict) -> None:
        # a connection the client closed after its timeout (already counted as an error) may still see the server's
        # reset on a stream waiter nobody awaits any more: not a new failure, not worth a traceback
        if not isinstance(context.get("exception"), ConnectionResetError):
            loop_.default_exception_handler(context)

    loop.set_exception_handler(quiet_reset)

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            status = await pool.post(bodies[i % len(bodies)], timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
            return
        latencies.append((loop.time() - due) * 1000)

    # tasks are created ahead of their due time in small waves, so the loop never holds minutes of sleeping tasks
    tasks = []
    for i in range(total):
        if i % 50 == 0:
            await asyncio.sleep(max(0.0, start + i / rate - loop.time() - 0.5))
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    pool.close()
    ok = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "rate": rate, "seconds": seconds, "sent": total, "answered": len(latencies), "errors": sum(errors.values()),
        "error_kinds": errors, "p50_ms": float(np.percentile(ok, 50)), "p90_ms": float(np.percentile(ok, 90)),
        "p99_ms": float(np.percentile(ok, 99)), "max_ms": float(np.max(ok)), "connections": pool.opened,
    }


def start_server(bundle: Path, backend: str, threads: int, port: int, log_path: Path, body: bytes) -> tuple[subprocess.Popen, float]:
    """The server process and its start-to-first-answer time (launch -> first decision received)."""
    command = [sys.executable, "-m", "sav_router.cli", "serve", "--model", str(bundle), "--threads", str(threads),
               "--port", str(port), "--host", "127.0.0.1", "--log-level", "warning"]
    if backend != "certified":
        command += ["--backend", backend, "--uncertified-backend"]  # no-op warning-free when it is the certified one
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    launched = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    request = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n").encode() + body
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}); see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
                conn.sendall(request)
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
            if answer.startswith(b"HTTP/1.1 200"):
                return process, time.perf_counter() - launched
        except OSError:
            pass
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("server did not answer in time")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def heavy_modules(pid: int) -> str:
    """Whether torch's shared library is mapped into the server process (the test checks sys.modules)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "torch loaded" if "libtorch" in maps else "no torch"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--backends", nargs="+", default=["certified", "torch"], help="certified (the bundle's own), torch, onnx, onnx-int8")
    parser.add_argument("--rates", nargs="+", type=float, default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "serving-openloop")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.output.mkdir(parents=True, exist_ok=True)
    texts = texts_for_load()
    bodies = [json.dumps({"id": str(i), "text": t}).encode() for i, t in enumerate(texts)]
    certified = json.loads((args.model / "router.json").read_text()).get("serving", {}).get("certified_backend", "torch")
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cores": os.cpu_count(), "threads": args.threads,
               "load_average_start": os.getloadavg(), "certified_backend": certified, "runs": [],
               "matmul_gflops": round(matmul_peak_gflops(args.threads), 1)}
    # this shared VM's speed moves from hour to hour: two runs' figures compare only with it beside them
    print(f"fp32 matmul peak here now: {results['matmul_gflops']} GFLOP/s on {args.threads} threads (torch, as serving.py measures it)", flush=True)
    for backend in args.backends:
        name = certified if backend == "certified" else backend
        port = free_port()
        process, first_answer_s = start_server(args.model, backend, args.threads, port, args.output / f"server-{name}.log", bodies[0])
        try:
            asyncio.run(open_loop(port, 20, 5, bodies))  # warm-up: connections, lazy allocations
            row = {"backend": name, "certified": name == certified, "start_to_first_answer_s": round(first_answer_s, 2),
                   "torch_in_process": heavy_modules(process.pid), "rates": []}
            for rate in args.rates:
                outcome = asyncio.run(open_loop(port, rate, args.seconds, bodies))
                outcome["load_average"] = os.getloadavg()[0]
                row["rates"].append(outcome)
                print(f"{name} @ {rate:.0f}/s: p50 {outcome['p50_ms']:.1f} ms, p99 {outcome['p99_ms']:.1f} ms, "
                      f"errors {outcome['errors']}, load {outcome['load_average']:.1f}", flush=True)
            row["resident_mb"] = round(resident_mb(process.pid), 1)
        finally:
            process.terminate()
            process.wait(timeout=60)
        results["runs"].append(row)
        print(f"{name}: start-to-first-answer {row['start_to_first_answer_s']} s, {row['resident_mb']} MB resident, {row['torch_in_process']}", flush=True)
    results["load_average_end"] = os.getloadavg()
    (args.output / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| backend | rate (req/s) | sent | p50 (ms) | p99 (ms) | max (ms) | errors | load avg (1 min) |", "|---|---|---|---|---|---|---|---|"]
    for row in results["runs"]:
        for r in row["rates"]:
            lines.append(f"| {row['backend']}{' (certified)' if row['certified'] else ''} | {r['rate']:.0f} | {r['sent']} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['errors']} | {r['load_average']:.1f} |")
    lines += ["", "| backend | start to first answer (s) | resident MB after the runs | torch in the server process |", "|---|---|---|---|"]
    lines += [f"| {row['backend']} | {row['start_to_first_answer_s']} | {row['resident_mb']} | {row['torch_in_process']} |" for row in results["runs"]]
    (args.output / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
