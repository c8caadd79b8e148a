"""Soak test: the server under steady concurrent load for a bounded time.

    python benchmarks/soak.py --model BUNDLE [--backend onnx] [--minutes 3] [--users 20]

Runs `sav-router serve` on the loopback, drives it with locust for the given
time (it stops by itself), samples the server's resident memory, then checks:
no failed request, memory growth after warm-up within --max-growth-mb, the
p99 latency of the last third of the run within --latency-ratio of the first
third's (plus a few ms of timer noise), and a clean exit on SIGTERM. Exit
code 0 when every check holds; a JSON summary is printed either way.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # noqa: E402  (benchmarks/serving.py: server and locust helpers)

LATENCY_SLACK_MS = 5.0  # below this, a p99 change is timer and scheduler noise


class MemorySampler(threading.Thread):
    """Resident memory (MB) of a process every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.done.wait(self.interval):
            try:
                self.samples.append((time.monotonic() - start, self.process.memory_info().rss / 2**20))
            except Exception:  # noqa: BLE001 - the process ended
                return


def window_p99(history: Path, start: float, end: float) -> float:
    """Median of the per-second p99 values (locust's current window) between two run fractions."""
    with history.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["Name"] == "Aggregated" and r["99%"] not in ("N/A", "0")]
    chosen = rows[int(len(rows) * start) : max(int(len(rows) * end), int(len(rows) * start) + 1)]
    return statistics.median(float(r["99%"]) for r in chosen) if chosen else float("nan")


def soak(bundle: Path, *, backend: str, seconds: int, users: int, rate: float, threads: int, output: Path, max_growth_mb: float, latency_ratio: float) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    texts = output / "texts.json"
    texts.write_text(json.dumps(serving.banking77("test")[0] if serving.BANKING77.is_dir() else ["refund my money", "where is my parcel"]))
    port = serving.free_port()
    server = serving.start_server(bundle, backend, threads, port, output / "server.log")
    sampler = MemorySampler(server.pid)
    sampler.start()
    try:
        stats = serving.run_locust(port, users, seconds, texts, output / "soak", rate=rate, history=True)
    finally:
        sampler.done.set()
        exit_code = serving.stop_server(server)
    warm = [rss for t, rss in sampler.samples if t >= seconds * 0.2] or [rss for _, rss in sampler.samples]
    first, last = window_p99(output / "soak_stats_history.csv", 0.1, 0.4), window_p99(output / "soak_stats_history.csv", 0.7, 1.0)
    result = {
        **stats,
        "seconds": seconds,
        "users": users,
        "rss_after_warmup_mb": round(warm[0], 1),
        "rss_max_mb": round(max(warm), 1),
        "rss_growth_mb": round(max(warm) - warm[0], 1),
        "p99_first_third_ms": first,
        "p99_last_third_ms": last,
        "server_exit_code": exit_code,
    }
    result["checks"] = {
        "no_errors": stats["failures"] == 0 and stats["requests"] > 0,
        "memory_bounded": result["rss_growth_mb"] <= max_growth_mb,
        "latency_stable": last <= first * latency_ratio + LATENCY_SLACK_MS,
        "clean_shutdown": exit_code == 0,
    }
    result["passed"] = all(result["checks"].values())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="bundle folder")
    parser.add_argument("--backend", default="torch", choices=serving.BACKENDS)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rate-per-user", type=float, default=0.0, help="requests/s per user (0: closed loop)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-growth-mb", type=float, default=64.0)
    parser.add_argument("--latency-ratio", type=float, default=1.5)
    parser.add_argument("--output", type=Path, default=serving.REPO / "runs" / "soak")
    args = parser.parse_args(argv)
    seconds = max(5, min(int(args.minutes * 60), 3600))  # bounded whatever is asked
    result = soak(
        args.model,
        backend=args.backend,
        seconds=seconds,
        users=args.users,
        rate=args.rate_per_user,
        threads=args.threads,
        output=args.output,
        max_growth_mb=args.max_growth_mb,
        latency_ratio=args.latency_ratio,
    )
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
