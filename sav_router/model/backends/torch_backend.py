"""Eager PyTorch inference on the bundle's weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sav_router.core.bundle import Manifest
from sav_router.model.network import MAX_PADDING, configure_threads, forward_texts, load_network


class TorchBackend:
    name = "torch"

    def __init__(self, bundle_dir: str | Path, manifest: Manifest, *, num_threads: int | None = None, batch_size: int = 64) -> None:
        configure_threads(num_threads)
        self.network, self.tokenizer = load_network(bundle_dir, manifest)
        self.max_length = manifest.max_length
        self.batch_size = batch_size
        self.max_padding = MAX_PADDING

    def forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return forward_texts(
            self.network, self.tokenizer, texts, max_length=self.max_length, batch_size=self.batch_size, max_padding=self.max_padding
        )
