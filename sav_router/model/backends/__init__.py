"""Inference backends: how a bundle's network turns texts into logits and embeddings.

Every backend has the same small interface (`InferenceBackend`) so the router,
the server and the evaluation code do not care which one runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sav_router.core.bundle import Manifest

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
BACKENDS = (TORCH, ONNX, ONNX_INT8)  # the one list of backend names (CLI choices, server, bundle record)
DEFAULT_BACKEND = TORCH


class InferenceBackend(Protocol):
    name: str

    def forward(self, texts: Sequence[str]) -> tuple["object", "object"]:
        """(logits [n, labels], pooled embeddings [n, hidden]) as float32 numpy arrays, in input order."""
        ...


def load_backend(name: str, bundle_dir: str | Path, manifest: Manifest, *, num_threads: int | None = None) -> InferenceBackend:
    if name == TORCH:
        from sav_router.model.backends.torch_backend import TorchBackend

        return TorchBackend(bundle_dir, manifest, num_threads=num_threads)
    if name in (ONNX, ONNX_INT8):
        from sav_router.model.backends.onnx_backend import OnnxBackend

        return OnnxBackend(bundle_dir, manifest, variant=name, num_threads=num_threads)
    raise ValueError(f"unknown backend {name!r} (available: {', '.join(BACKENDS)})")
