"""The local workspace: the embedded default's stand-in for the AWS artifacts bucket.

Same prefix layout as the bucket (`sav_router.core.layout`, one module for both),
so files move between the two unchanged; see that module for what lives where.

Every name that becomes a path (model version) is checked by `core.names`;
every read-modify-write of `registry.json` holds its lock (`core.jsonio.locked`),
so two processes promoting and rolling back at once never lose an entry.

Pure Python (json, shutil): no model is loaded here.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sav_router import env
from sav_router.core import layout
from sav_router.core.bundle import MANIFEST_NAME, BundleError, Manifest, read_manifest
from sav_router.core.clock import utc_now
from sav_router.core.jsonio import locked, write_json_atomic
from sav_router.core.names import InvalidName, check_name, copy_tree_without_links, inside

PREFIXES = tuple(prefix.rstrip("/") for prefix in layout.WORKSPACE_PREFIXES)
REGISTRY = layout.REGISTRY
DEFAULT_WORKSPACE = "sav-router-workspace"
ACTIONS = ("promote", "rollback")


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown version, failed gate, unreadable registry...)."""


def _version_or_none(value: Any) -> bool:
    if value is None:
        return True
    try:
        check_name(value, "model version")
    except InvalidName:
        return False
    return True


def validate_registry(data: Any, source: Path) -> dict[str, Any]:
    """The registry as written by `_record`, or a RegistryError naming the file and the problem."""
    def bad(problem: str) -> RegistryError:
        return RegistryError(f"{source}: corrupt registry ({problem}); restore it from a backup or fix it by hand")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if not _version_or_none(data.get("production")):
        raise bad(f"'production' must be a model version or null, got {data.get('production')!r}")
    history = data.get("history", [])
    if not isinstance(history, list):
        raise bad("'history' must be a list")
    for number, event in enumerate(history, start=1):
        if not isinstance(event, dict) or event.get("action") not in ACTIONS:
            raise bad(f"history entry {number} is not a promotion or rollback")
        if not _version_or_none(event.get("version")) or not _version_or_none(event.get("previous")):
            raise bad(f"history entry {number} names an invalid model version")
    return {**data, "production": data.get("production"), "history": history}


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
        """`root/prefix/parts...` for names the code builds; a model version from outside goes through `model_dir`."""
        if prefix not in PREFIXES:
            raise ValueError(f"unknown workspace prefix {prefix!r}")
        return self.root.joinpath(prefix, *parts)

    # -- registry ------------------------------------------------------------
    def registry(self) -> dict[str, Any]:
        path = self.root / REGISTRY
        if not path.is_file():
            return {"production": None, "history": []}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RegistryError(f"{path}: unreadable registry ({type(exc).__name__}: {exc}); restore it from a backup or fix it by hand") from None
        return validate_registry(data, path)

    def production_version(self) -> str | None:
        return self.registry().get("production")

    def production_dir(self) -> Path:
        version = self.production_version()
        if version is None:
            raise RegistryError(f"no model in production in {self.root} (use `sav-router promote VERSION`)")
        return self.model_dir(version)

    def model_dir(self, version: str) -> Path:
        try:
            path = inside(self.path("models"), version, what="model version")  # a plain name, and no link out of models/
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None
        if not (path / MANIFEST_NAME).is_file():
            raise RegistryError(f"unknown model version {version!r} in {self.root / 'models'}")
        return path

    def models(self) -> list[ModelEntry]:
        production = self.production_version()
        entries = []
        models = self.root / "models"
        for path in sorted(models.iterdir()) if models.is_dir() else []:
            if path.name.startswith(".") or path.is_symlink():
                continue  # a staging copy in progress, or nothing `register` made
            try:
                manifest = read_manifest(path)
            except BundleError:
                continue  # not a bundle (or one this version cannot read): not listed
            if manifest.model_version != path.name:
                continue  # a folder renamed by hand: its manifest would be promoted under another name
            entries.append(ModelEntry(path.name, path, manifest, path.name == production))
        return entries

    def register(self, bundle_dir: str | os.PathLike[str]) -> str:
        """Copy a trained bundle into models/<model_version>/ (idempotent)."""
        manifest = read_manifest(bundle_dir)  # the model version is checked there (core.names)
        target = self.path("models", manifest.model_version)
        if not target.exists():
            staging = Path(tempfile.mkdtemp(dir=self.ensure().path("models"), prefix=".staging-"))
            try:
                copy_tree_without_links(bundle_dir, staging)
            except InvalidName as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise BundleError(str(exc)) from None
            try:
                os.replace(staging, target)
            except OSError:  # registered meanwhile by another process: same version, same files
                shutil.rmtree(staging, ignore_errors=True)
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

    def annotation_files(self) -> list[Path]:
        """The annotation drops, oldest first (stamped names), rejects files left out."""
        from sav_router.data.annotations import DATA_SUFFIXES

        folder = self.path("annotations")
        files = folder.rglob("*") if folder.is_dir() else []
        return sorted(p for p in files if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES) and not p.name.endswith(".rejects.jsonl"))

    def comparison_dir(self, version: str) -> Path:
        """Where a candidate's comparison with production is written, and where `promote` reads it."""
        return self.path("evaluations", version, "comparison")

    def comparison_for(self, version: str) -> dict[str, Any] | None:
        path = self.comparison_dir(version) / "comparison.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def promote(self, version: str, *, force: bool = False, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Put `version` in production; refuse a candidate that failed (or lacks) its comparison gate unless forced."""
        self.model_dir(version)
        with locked(self.root / REGISTRY):  # the whole read-check-write, or two processes lose history
            return self._promote(version, force=force, reason=reason, by=by)

    def _promote(self, version: str, *, force: bool, reason: str | None, by: str | None) -> dict[str, Any]:
        previous = self.production_version()
        if previous == version:
            raise RegistryError(f"{version} is already in production")
        gate = (self.comparison_for(version) or {}).get("gate")
        check_promotion(version, previous, gate, force=force, reason=reason)
        self._record("promote", version, previous, reason=reason, forced=force, gate=gate, by=by)
        return {"version": version, "previous": previous, "gate": gate}

    def rollback(self, *, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Return to the model that was in production before the current one."""
        with locked(self.root / REGISTRY):
            return self._rollback(reason=reason, by=by)

    def _rollback(self, *, reason: str | None, by: str | None) -> dict[str, Any]:
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
