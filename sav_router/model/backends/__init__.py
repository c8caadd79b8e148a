"""Inference backends: how a bundle's network turns texts into logits and embeddings.

Every backend has the same small interface (`InferenceBackend`) so the router,
the server and the evaluation code do not care which one runs. A bundle's
thresholds and promise are computed on the scores of one backend, the one
`train` (or `recalibrate`) certified (`serving.certified_backend` in the
manifest; bundles from before it was recorded were certified on torch): that
is the backend every loader uses unless asked for another, which the promise
does not cover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sav_router.core.bundle import Manifest

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
BACKENDS = (TORCH, ONNX, ONNX_INT8)  # the one list of backend names (CLI choices, server, bundle record)
CERTIFIED = "certified"  # not a backend: "the one the bundle's promise was computed on"
DEFAULT_BACKEND = CERTIFIED
AUTO = "auto"  # training: the fastest backend that passes the equivalence gate
PREFERENCE = (ONNX_INT8, ONNX, TORCH)  # fastest first (BENCHMARKS.md, serving)


class InferenceBackend(Protocol):
    name: str

    def forward(self, texts: Sequence[str]) -> tuple["object", "object"]:
        """(logits [n, labels], pooled embeddings [n, hidden]) as float32 numpy arrays, in input order."""
        ...


def certified_backend(manifest: Manifest) -> str:
    """The backend whose scores the bundle's thresholds and promise were computed on."""
    name = manifest.serving.get("certified_backend")
    return name if name in BACKENDS else TORCH


def resolve_backend(name: str | None, manifest: Manifest) -> str:
    """`name`, or the certified backend for None / "certified"."""
    return certified_backend(manifest) if name in (None, "", CERTIFIED) else name


def uncovered_message(name: str, manifest: Manifest) -> str:
    certified = certified_backend(manifest)
    return (f"backend {name!r} is not the one this bundle was certified on ({certified!r}): its thresholds and precision "
            f"promise were computed on {certified}'s scores and do not cover {name}'s decisions")


def file_sha256(path: str | Path) -> str:
    """What a certification records of the ONNX file it was computed on."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_backend(name: str, bundle_dir: str | Path, manifest: Manifest, *, num_threads: int | None = None) -> InferenceBackend:
    name = resolve_backend(name, manifest)
    if name == TORCH:
        from sav_router.model.backends.torch_backend import TorchBackend

        return TorchBackend(bundle_dir, manifest, num_threads=num_threads)
    if name in (ONNX, ONNX_INT8):
        from sav_router.model.backends.onnx_backend import OnnxBackend

        # the certified variant serves whatever a later export-onnx check on other data says: its promise is computed on its own scores
        return OnnxBackend(bundle_dir, manifest, variant=name, num_threads=num_threads, require_approval=name != certified_backend(manifest))
    raise ValueError(f"unknown backend {name!r} (available: {', '.join(BACKENDS)})")
