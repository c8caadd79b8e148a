"""The serving image (no torch) next to the full training image, as far as a machine without Docker measures them.

    python benchmarks/serving_image.py [--repeats 5] [--model BUNDLE]

Builds two fresh virtual environments holding exactly what the Dockerfile's targets pip-install
(the package lists are read from training_image/Dockerfile, the constraints built from
requirements.txt by the Dockerfile's own command):
  serving  /tmp/serving-venv: the `runtime` stage's install (what `--target serving` has);
  full     /tmp/full-venv:    that, torch==2.13.0 (here the CPU wheel PyPI serves this machine; the image takes it
                              from download.pytorch.org) and the `training` stage's install.
Then, for each, the size of site-packages (`du -sk`) and the time from process start to the first
200 answer of POST /invocations (the SageMaker contract) of `training_image/serve`, run with that
venv's python and PYTHONPATH=<repo> on the model bundle (default: the quickstart's production
model), median of --repeats starts; also the full venv serving the same bundle on torch
(SAV_ROUTER_BACKEND=torch, uncertified: what a torch-certified bundle costs).

Not measured here: the base image (python:3.11-slim), the image layers and their compression,
pulling the image and starting the container on SageMaker: only a Docker engine / an AWS account
measures those.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "training_image" / "Dockerfile"
SERVE = REPO / "training_image" / "serve"
QUICKSTART = REPO / "sav-router-quickstart"
TORCH_PIN = "torch==2.13.0"
REQUEST = b'{"text": "I was charged twice for my order"}'


def dockerfile_stages() -> dict[str, tuple[str, list[str]]]:
    """stage name -> (base, RUN commands), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("FROM "):
            words = line.split()
            current = words[3] if len(words) == 4 else words[1]
            stages[current] = (words[1], [])
        elif line.startswith("RUN ") and current is not None:
            stages[current][1].append(line[4:])
    return stages


def pip_packages(stage: str) -> list[list[str]]:
    """The package arguments of each `pip install -c constraints.txt ...` step of `stage` (its parents' not included)."""
    steps = []
    for command in dockerfile_stages()[stage][1]:
        if "pip install" in command and "constraints.txt" in command:
            words = command.split("constraints.txt", 1)[1].split("&&")[0].split()
            steps.append([word.strip('"') for word in words])
    return steps


def constraints_file(folder: Path) -> Path:
    """constraints.txt as the Dockerfile's runtime stage builds it (its own command, run here)."""
    (command,) = [c for c in dockerfile_stages()["runtime"][1] if "> constraints.txt" in c]
    shutil.copy(REPO / "requirements.txt", folder / "requirements.txt")
    subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=folder, check=True)
    return folder / "constraints.txt"


def make_venv(path: Path, steps: list[list[str]]) -> Path:
    python = path / "bin" / "python"
    marker = path / "sav-router-install-steps.json"  # what it was built with: a changed Dockerfile rebuilds it
    if python.exists() and marker.is_file() and json.loads(marker.read_text()) == steps:
        print(f"{path}: built with the same install steps, reused")
        return python
    if path.exists():
        print(f"{path}: built with other install steps (or unknown ones): rebuilt")
        shutil.rmtree(path)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    with tempfile.TemporaryDirectory() as folder:
        constraints = constraints_file(Path(folder))
        for step in steps:
            command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *step]
            if step != [TORCH_PIN]:
                command[5:5] = ["-c", str(constraints)]
            print("+", " ".join(command[3:]), flush=True)
            subprocess.run(command, check=True)
    marker.write_text(json.dumps(steps))
    return python


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def size_mb(folder: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(folder)], capture_output=True, text=True, check=True).stdout.split()[0]) / 1024


def distributions(python: Path) -> set[str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"], capture_output=True, text=True, check=True)
    return {item["name"].lower().replace("_", "-") for item in json.loads(out.stdout)}


def production_model() -> Path:
    registry = json.loads((QUICKSTART / "registry.json").read_text())
    return QUICKSTART / "models" / registry["production"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_answer(python: Path, model: Path, extra_env: dict[str, str]) -> tuple[float, float]:
    """(seconds from process start to the first 200 of POST /invocations, RSS MB then) of one `serve`."""
    port = free_port()
    with tempfile.TemporaryDirectory() as opt_ml:
        os.symlink(model, Path(opt_ml) / "model")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAV_ROUTER_", "SM_", "PYTHON"))}
        env |= {"PYTHONPATH": str(REPO), "SAV_ROUTER_OPT_ML": opt_ml, "SAV_ROUTER_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra_env}
        started = time.perf_counter()
        process = subprocess.Popen([str(python), str(SERVE)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"serve exited {process.returncode}: {process.stderr.read().decode()[-2000:]}")
                if time.perf_counter() - started > 120:
                    raise RuntimeError("no answer within 120 s")
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    connection.request("POST", "/invocations", body=REQUEST, headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    response.read()
                    if response.status == 200:
                        elapsed = time.perf_counter() - started
                        break
                except OSError:
                    pass
                time.sleep(0.02)
            rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{process.pid}/status").read_text()).group(1)) / 1024
        finally:
            process.terminate()
            process.wait(timeout=60)
    return elapsed, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", type=Path, help="bundle folder (default: the quickstart's production model)")
    parser.add_argument("--serving-venv", type=Path, default=Path("/tmp/serving-venv"))
    parser.add_argument("--full-venv", type=Path, default=Path("/tmp/full-venv"))
    args = parser.parse_args()
    model = (args.model or production_model()).resolve()
    certified = json.loads((model / "router.json").read_text()).get("serving", {}).get("certified_backend", "torch")

    serving_steps = pip_packages("runtime")
    serving = make_venv(args.serving_venv, serving_steps)
    full = make_venv(args.full_venv, [*serving_steps, [TORCH_PIN], *pip_packages("training")])
    serving_dists, full_dists = distributions(serving), distributions(full)
    assert not {"torch", "transformers"} & serving_dists, "torch came into the serving venv"

    rows = []
    for name, python in (("serving", serving), ("full", full)):
        rows.append((name, size_mb(site_packages(python)), len(distributions(python))))
    dev = REPO / ".venv" / "bin" / "python"
    print(f"\nmodel: {model} (certified: {certified}); {args.repeats} starts each, median (min-max)")
    print("\nsite-packages (du -sk), distributions:")
    for name, mb, count in rows:
        print(f"  {name:<8} {mb:8.0f} MB  {count:3d} distributions")
    if dev.exists():
        print(f"  (this repository's dev .venv, with tests, CDK, moto, playwright: {size_mb(site_packages(dev)):.0f} MB)")
    print(f"  in full, not in serving: {', '.join(sorted(full_dists - serving_dists))}")

    runs = [("serving venv, certified backend", serving, {}), ("full venv, certified backend", full, {})]
    if certified != "torch":
        runs.append(("full venv, torch backend (uncertified)", full, {"SAV_ROUTER_BACKEND": "torch", "SAV_ROUTER_UNCERTIFIED_BACKEND": "1"}))
    print("\nstart to first 200 of POST /invocations (training_image/serve), RSS after it:")
    for label, python, extra in runs:
        results = [first_answer(python, model, extra) for _ in range(args.repeats)]
        seconds, rss = [r[0] for r in results], [r[1] for r in results]
        print(f"  {label:<40} {statistics.median(seconds):6.2f} s ({min(seconds):.2f}-{max(seconds):.2f})   RSS {statistics.median(rss):5.0f} MB",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
