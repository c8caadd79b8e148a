"""The on-disk model bundle: `router.json` and the files beside it.

A bundle is one folder: the fine-tuned encoder as a Hugging Face model folder
(config.json, model.safetensors, tokenizer files), the classification head and
the out-of-distribution statistics as safetensors (no pickle anywhere), and
`router.json`, the manifest written here. The manifest carries a format
protocol number; loaders refuse a bundle whose protocol they do not know, so a
newer bundle never runs half-understood on an older router.

Pure Python (json only): the routing Lambda reads thresholds from a manifest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sav_router import __version__
from sav_router.core.jsonio import write_json_atomic
from sav_router.core.names import InvalidName, check_name, check_relative
from sav_router.core.policy import RoutingPolicy

FORMAT_NAME = "sav-router-bundle"
PROTOCOL = 1
SUPPORTED_PROTOCOLS = frozenset({1})
MANIFEST_NAME = "router.json"
HEAD_FILE = "router_head.safetensors"
OOD_FILE = "ood.safetensors"


class BundleError(ValueError):
    """A folder is not a bundle this version of sav-router can trust."""


@dataclass
class Manifest:
    """Everything about a bundle except its tensors."""

    labels: list[str]
    policy: RoutingPolicy
    base_model: str
    model_version: str
    created_at: str
    temperature: float = 1.0
    max_length: int = 64
    architecture: dict[str, Any] = field(default_factory=dict)  # pooling, normalize
    calibration: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    package_version: str = __version__
    protocol: int = PROTOCOL

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "protocol": self.protocol,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "package_version": self.package_version,
            "base_model": self.base_model,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "max_length": self.max_length,
            "architecture": self.architecture,
            "policy": self.policy.to_dict(),
            "calibration": self.calibration,
            "ood": self.ood,
            "training": self.training,
            "metrics": self.metrics,
            "serving": self.serving,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "router.json") -> "Manifest":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise BundleError(f"{source}: not a sav-router bundle manifest (missing format {FORMAT_NAME!r})")
        protocol = data.get("protocol")
        if not isinstance(protocol, int) or isinstance(protocol, bool):
            raise BundleError(f"{source}: protocol must be an integer, got {protocol!r}")
        if protocol not in SUPPORTED_PROTOCOLS:
            newer = protocol > max(SUPPORTED_PROTOCOLS)
            hint = "upgrade sav-router to load it" if newer else "it predates every protocol this version reads"
            raise BundleError(
                f"{source}: bundle protocol {protocol} is not supported by sav-router {__version__} "
                f"(supported: {sorted(SUPPORTED_PROTOCOLS)}); {hint}"
            )
        try:
            labels = [str(label) for label in data["labels"]]
            manifest = cls(
                labels=labels,
                policy=RoutingPolicy.from_dict(data["policy"]),
                base_model=str(data["base_model"]),
                model_version=str(data["model_version"]),
                created_at=str(data["created_at"]),
                temperature=float(data.get("temperature", 1.0)),
                max_length=int(data.get("max_length", 64)),
                architecture=dict(data.get("architecture") or {}),
                calibration=dict(data.get("calibration") or {}),
                ood=dict(data.get("ood") or {}),
                training=dict(data.get("training") or {}),
                metrics=dict(data.get("metrics") or {}),
                serving=dict(data.get("serving") or {}),
                package_version=str(data.get("package_version", "unknown")),
                protocol=protocol,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{source}: invalid manifest field: {exc}") from exc
        if not labels or len(set(labels)) != len(labels):
            raise BundleError(f"{source}: labels must be a non-empty list without duplicates")
        if not math.isfinite(manifest.temperature) or manifest.temperature <= 0:
            raise BundleError(f"{source}: temperature must be a finite number > 0, got {manifest.temperature!r}")
        if isinstance(data.get("max_length", 64), bool) or manifest.max_length < 1:
            raise BundleError(f"{source}: max_length must be a positive integer, got {data.get('max_length')!r}")
        try:
            check_name(manifest.model_version, "model version")
            for entry in bundle_files(manifest):
                check_relative(entry, "bundle file")
        except InvalidName as exc:
            raise BundleError(f"{source}: {exc}") from None
        return manifest


def bundle_files(manifest: Manifest) -> list[str]:
    """The file names a manifest points at (each must be a plain name inside the bundle)."""
    names = []
    if manifest.ood:
        names.append(manifest.ood.get("file", OOD_FILE))
    onnx = manifest.serving.get("onnx") if isinstance(manifest.serving, Mapping) else None
    if isinstance(onnx, Mapping) and isinstance(onnx.get("files"), Mapping):
        names.extend(onnx["files"].values())
    return names


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate `router.json`; raise BundleError with a clear reason."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: no {MANIFEST_NAME} (not a sav-router model bundle)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from exc
    return Manifest.from_dict(data, source=str(path))


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write `router.json` atomically (a reader never sees half a manifest)."""
    return write_json_atomic(Path(bundle_dir) / MANIFEST_NAME, manifest.to_dict())


ENCODER_CONFIG = "config.json"
ENCODER_WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def check_safetensors(path: Path) -> None:
    """A whole safetensors file: its header parses and its tensors end where the file ends.

    Catches a truncated copy or a file of another format (a pickle renamed) before any
    loader sees it, with the file named; reads the header only.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise BundleError(f"{path}: not a safetensors file (truncated header)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(size - 8, 100_000_000):
                raise BundleError(f"{path}: not a safetensors file (header length {length} for {size} bytes)")
            header = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{path}: not a safetensors file ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path}: not a safetensors file (header is not an object)")
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        raise BundleError(f"{path}: not a safetensors file (bad tensor entry)") from None
    if 8 + length + end != size:
        raise BundleError(f"{path}: truncated or padded safetensors file ({size} bytes, header says {8 + length + end})")


def check_bundle_files(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """Every file the router will load is there and whole, or a BundleError naming it (before torch runs)."""
    folder = Path(bundle_dir)
    config_path = folder / ENCODER_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{config_path}: missing (the encoder's Hugging Face config)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{config_path}: unreadable ({type(exc).__name__})") from None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(positions, int) and manifest.max_length > positions:
        raise BundleError(f"{folder / MANIFEST_NAME}: max_length {manifest.max_length} exceeds the encoder's {positions} positions ({config_path})")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise BundleError(f"{folder}: no tokenizer vocabulary (expected one of {', '.join(TOKENIZER_FILES)})")
    check_safetensors(folder / ENCODER_WEIGHTS)
    check_safetensors(folder / HEAD_FILE)
    if manifest.ood:
        check_safetensors(folder / manifest.ood.get("file", OOD_FILE))


@contextmanager
def staged_bundle(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh folder to write a bundle into; on success it replaces `target`, on failure it is removed.

    A crash at any point leaves `target` either the old bundle, the new one, or a
    folder with no manifest (refused by every loader with a clear error), never new
    weights beside an old manifest: the old manifest goes first, the new one comes last.
    Entries are moved, not the folder renamed, so `target` may be a mount point
    (SageMaker's /opt/ml/model).
    """
    target = Path(target)
    if target.is_dir() and any(target.iterdir()) and not any((target / name).exists() for name in (MANIFEST_NAME, OOD_FILE, "model.safetensors")):
        raise BundleError(f"{target} exists and holds files that are not a model bundle: choose a new folder (it would be replaced)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        target.mkdir(exist_ok=True)
        (target / MANIFEST_NAME).unlink(missing_ok=True)  # from here on, target is no bundle until the new manifest lands
        for old in target.iterdir():
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        entries = sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_NAME)  # the manifest last
        for entry in entries:
            shutil.move(str(entry), str(target / entry.name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
