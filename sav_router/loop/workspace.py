"""The local workspace: the embedded default's stand-in for the AWS artifacts bucket.

Same prefix layout as the bucket, so files move between the two unchanged:

    annotations/   annotation drops (<stamp>-<source>-<teach|check>.jsonl)
    models/        bundles, one folder per model version
    evaluations/   reports (evaluations/<version>/...)
    traffic/       logged requests and decisions (<day>.jsonl), observer decisions beside them
    review/        the local escalation queue (queue.jsonl) and reviewer progress
    registry.json  which version is in production, and every promotion / rollback

Pure Python (json, shutil): no model is loaded here.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sav_router import env
from sav_router.core.bundle import BundleError, Manifest, read_manifest

PREFIXES = ("annotations", "datasets", "models", "evaluations", "traffic", "review")
REGISTRY = "registry.json"
DEFAULT_WORKSPACE = "sav-router-workspace"


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown version, failed gate...)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stamp(moment: datetime | None = None) -> str:
    return (moment or utc_now()).strftime("%Y%m%dT%H%M%S%fZ")


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(handle.name, path)


def append_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append rows and flush to disk: a crash never loses an answered row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def check_promotion(version: str, previous: str | None, gate: Mapping[str, Any] | None, *, force: bool, reason: str | None) -> None:
    """The promotion rule (CLI, console): a failed or missing gate refuses, unless forced with a recorded reason."""
    if previous is not None and not force:
        if gate is None:
            raise RegistryError(
                f"no comparison of {version} with production {previous}: run `sav-router compare` "
                "(or pass --force --reason TEXT)"
            )
        if not gate.get("passed"):
            raise RegistryError(f"{version} failed the promotion gate: {gate.get('reason')} (pass --force --reason TEXT to override)")
    if force and not (reason or "").strip():
        raise RegistryError("a forced promotion needs --reason TEXT (it is recorded)")


@dataclass
class ModelEntry:
    version: str
    path: Path
    manifest: Manifest
    in_production: bool


class Workspace:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(env.resolve(str(root) if root is not None else None, env.WORKSPACE, DEFAULT_WORKSPACE))

    def ensure(self) -> "Workspace":
        for prefix in PREFIXES:
            (self.root / prefix).mkdir(parents=True, exist_ok=True)
        return self

    def path(self, prefix: str, *parts: str) -> Path:
        if prefix not in PREFIXES:
            raise ValueError(f"unknown workspace prefix {prefix!r}")
        return self.root.joinpath(prefix, *parts)

    # -- registry ------------------------------------------------------------
    def registry(self) -> dict[str, Any]:
        path = self.root / REGISTRY
        if not path.is_file():
            return {"production": None, "history": []}
        return json.loads(path.read_text(encoding="utf-8"))

    def production_version(self) -> str | None:
        return self.registry().get("production")

    def production_dir(self) -> Path:
        version = self.production_version()
        if version is None:
            raise RegistryError(f"no model in production in {self.root} (use `sav-router promote VERSION`)")
        return self.model_dir(version)

    def model_dir(self, version: str) -> Path:
        path = self.path("models", version)
        if not (path / "router.json").is_file():
            raise RegistryError(f"unknown model version {version!r} in {self.root / 'models'}")
        return path

    def models(self) -> list[ModelEntry]:
        production = self.production_version()
        entries = []
        models = self.root / "models"
        for path in sorted(models.iterdir()) if models.is_dir() else []:
            try:
                manifest = read_manifest(path)
            except BundleError:
                continue  # not a bundle (or one this version cannot read): not listed
            entries.append(ModelEntry(path.name, path, manifest, path.name == production))
        return entries

    def register(self, bundle_dir: str | os.PathLike[str]) -> str:
        """Copy a trained bundle into models/<model_version>/ (idempotent)."""
        manifest = read_manifest(bundle_dir)
        target = self.path("models", manifest.model_version)
        if not target.exists():
            staging = Path(tempfile.mkdtemp(dir=self.ensure().path("models"), prefix=".staging-"))
            shutil.copytree(bundle_dir, staging, dirs_exist_ok=True)
            os.replace(staging, target)
        return manifest.model_version

    def _record(
        self, action: str, version: str | None, previous: str | None, *, reason: str | None, forced: bool, gate: Mapping[str, Any] | None, by: str | None = None
    ) -> None:
        registry = self.registry()
        registry["production"] = version
        registry["history"].append(
            {
                "action": action,
                "version": version,
                "previous": previous,
                "at": utc_now().isoformat(timespec="seconds"),
                "by": by or getpass.getuser(),
                "reason": reason,
                "forced": forced,
                "gate": dict(gate) if gate else None,
            }
        )
        write_json_atomic(self.root / REGISTRY, registry)

    def comparison_for(self, version: str) -> dict[str, Any] | None:
        path = self.path("evaluations", version, "comparison", "comparison.json")
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def promote(self, version: str, *, force: bool = False, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Put `version` in production; refuse a candidate that failed (or lacks) its comparison gate unless forced."""
        self.model_dir(version)
        previous = self.production_version()
        if previous == version:
            raise RegistryError(f"{version} is already in production")
        gate = (self.comparison_for(version) or {}).get("gate")
        check_promotion(version, previous, gate, force=force, reason=reason)
        self._record("promote", version, previous, reason=reason, forced=force, gate=gate, by=by)
        return {"version": version, "previous": previous, "gate": gate}

    def rollback(self, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Return to the model that was in production before the current one."""
        current = self.production_version()
        if current is None:
            raise RegistryError("nothing in production to roll back")
        # Replay the history as a stack: a promotion pushes, a rollback pops.
        lineage: list[str] = []
        for event in self.registry()["history"]:
            if event["action"] == "promote":
                lineage.append(event["version"])
            elif event["action"] == "rollback" and lineage:
                lineage.pop()
        if len(lineage) < 2:
            raise RegistryError(f"{current} has no earlier production model to roll back to")
        previous = lineage[-2]
        self._record("rollback", previous, current, reason=reason, forced=False, gate=None, by=by)
        return {"version": previous, "previous": current}
