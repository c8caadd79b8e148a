"""ONNX Runtime inference on a bundle's exported network (fp32 or int8).

Same inputs and outputs as the torch backend: tokenized texts in
length-sorted batches (little padding), logits and mean-pooled embeddings
back in input order. The exported files and their equivalence reports live
in the manifest's `serving.onnx` record (see `onnx_export`). Imports neither
torch nor transformers: the tokenizer is read with the `tokenizers` library
alone (`encoding.load_tokenizer`), so a server of an ONNX bundle never loads torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sav_router import env
from sav_router.core.bundle import BundleError, Manifest
from sav_router.model.backends import ONNX, ONNX_INT8
from sav_router.model.backends.encoding import MAX_PADDING, Encoded, length_sorted_batches, load_tokenizer

VARIANTS = (ONNX, ONNX_INT8)


def onnx_record(manifest: Manifest) -> dict:
    return dict(manifest.serving.get("onnx") or {})


def session_options(num_threads: int | None):
    """One inference at a time (the micro-batcher serialises calls), all usable cores inside it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, env.resolve(num_threads, env.NUM_THREADS, env.usable_cores(), int))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxBackend:
    def __init__(
        self,
        bundle_dir: str | Path,
        manifest: Manifest,
        *,
        variant: str = ONNX,
        num_threads: int | None = None,
        batch_size: int = 64,
        require_approval: bool = True,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r} (available: {', '.join(VARIANTS)})")
        bundle_dir = Path(bundle_dir)
        record = onnx_record(manifest)
        relative = (record.get("files") or {}).get(variant)
        if relative is None or not (bundle_dir / relative).is_file():
            raise BundleError(f"{bundle_dir}: no exported {variant} model; run `sav-router export-onnx {bundle_dir} --check DATA` first")
        if require_approval and variant == ONNX_INT8 and not (record.get("equivalence") or {}).get(variant, {}).get("passed"):
            raise BundleError(
                f"{bundle_dir}: the int8 model has not passed the equivalence check (top-1 agreement >= 99.5%, accuracy within 0.5 point); "
                f"run `sav-router export-onnx {bundle_dir} --check LABELED_DATA` or serve with --backend onnx"
            )
        self._open(bundle_dir / relative, bundle_dir, name=variant, max_length=manifest.max_length, num_labels=len(manifest.labels),
                   num_threads=num_threads, batch_size=batch_size)

    @classmethod
    def from_file(cls, path: str | Path, tokenizer_dir: str | Path, *, name: str, max_length: int, num_labels: int,
                  num_threads: int | None = None, batch_size: int = 64) -> "OnnxBackend":
        """A backend on an exported file before any manifest records it (training's equivalence gate)."""
        backend = cls.__new__(cls)
        backend._open(Path(path), Path(tokenizer_dir), name=name, max_length=max_length, num_labels=num_labels,
                      num_threads=num_threads, batch_size=batch_size)
        return backend

    def _open(self, path: Path, tokenizer_dir: Path, *, name: str, max_length: int, num_labels: int, num_threads: int | None,
              batch_size: int) -> None:
        import onnxruntime as ort

        self.name = name
        self.path = path
        self.session = ort.InferenceSession(str(path), session_options(num_threads), providers=["CPUExecutionProvider"])
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.max_length = max_length
        self.num_labels = num_labels
        self.batch_size = batch_size
        self.max_padding = MAX_PADDING  # padded tokens allowed per real token inside one session run

    def forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        logits = np.zeros((len(texts), self.num_labels), dtype=np.float32)
        if not texts:
            return logits, np.zeros((0, 0), dtype=np.float32)
        encoded = Encoded(self.tokenizer, texts, self.max_length)
        pooled: np.ndarray | None = None
        for indices in length_sorted_batches(encoded.lengths, self.batch_size, self.max_padding):
            ids, mask = encoded.arrays(indices)
            batch_logits, batch_pooled = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            if pooled is None:
                pooled = np.zeros((len(texts), batch_pooled.shape[1]), dtype=np.float32)
            logits[indices] = batch_logits
            pooled[indices] = batch_pooled
        return logits, pooled
