"""Export a bundle's network to ONNX (fp32 + dynamically quantized int8) and check it.

`prepare_onnx` is what `sav-router export-onnx` runs: export, quantize,
compare each variant with eager PyTorch on a labeled set, and record files,
reports and the fastest approved backend in the manifest's `serving` field.
An int8 model is approved only if it keeps top-1 agreement >= 99.5% and
accuracy within 0.5 point of PyTorch; the int8 backend refuses to load
otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sav_router.model.backends import TORCH, file_sha256
from sav_router.model.backends.onnx_backend import ONNX, ONNX_INT8, OnnxBackend, onnx_record
from sav_router.core.bundle import read_manifest, write_manifest

ONNX_DIR = "onnx"
FILES = {ONNX: f"{ONNX_DIR}/router.fp32.onnx", ONNX_INT8: f"{ONNX_DIR}/router.int8.onnx"}
MIN_AGREEMENT = 0.995
MAX_ACCURACY_DROP = 0.005
GELU_OPS = ("Gelu", "FastGelu", "BiasGelu")


def export_fp32(bundle_dir: str | Path, output: str | Path) -> Path:
    """The bundle's network (as its manifest describes it) exported to `output` (`export_network`)."""
    from sav_router.model.network import load_network

    manifest = read_manifest(bundle_dir)
    network, tokenizer = load_network(bundle_dir, manifest)
    return export_network(network, tokenizer, output)


def export_network(network, tokenizer, output: str | Path) -> Path:
    """Trace the network (encoder + mean pooling + head) with dynamic batch and sequence axes.

    TorchScript export with eager attention, not the dynamo exporter: ONNX Runtime's BERT
    fusions (one Attention kernel per layer, embedding and skip LayerNorms) recognise the
    graphs it writes and not the SDPA masking that dynamo exports; the fused fp32 graph
    answers one Banking77 request 2.3x faster than eager PyTorch (BENCHMARKS.md, serving).
    A CPU copy is traced: `network` (maybe on a GPU, maybe still training) is left as it is.
    """
    import copy

    import torch

    network = copy.deepcopy(network).to("cpu").eval()
    if hasattr(network.encoder, "set_attn_implementation"):
        network.encoder.set_attn_implementation("eager")
    example = tokenizer(["an example request to trace", "another one"], padding=True, return_tensors="pt")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes the dynamic axes cover; the equivalence gate checks the result
        torch.onnx.export(
            network,
            (example["input_ids"], example["attention_mask"]),
            str(output),
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits", "pooled"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "logits": {0: "batch"},
                "pooled": {0: "batch"},
            },
        )
    return output


def export_variants(folder: str | Path, network=None, tokenizer=None, *, log: Callable[[str], None] = print) -> dict:
    """fp32 (fused) and int8 files written under `folder/onnx/`; returns the `serving.onnx` record's files, opset and fusions.

    `network` and `tokenizer`: the model to export (training); without them the bundle's own (export-onnx).
    """
    folder = Path(folder)
    fp32 = export_fp32(folder, folder / FILES[ONNX]) if network is None else export_network(network, tokenizer, folder / FILES[ONNX])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    heads, hidden = config.get("num_attention_heads") or config.get("n_heads"), config.get("hidden_size") or config.get("dim")
    fused = fuse_transformer_ops(fp32, num_heads=int(heads), hidden_size=int(hidden), log=log) if heads and hidden else {}
    log(f"fused operators: {fused or 'none'}")
    quantize_int8(fp32, folder / FILES[ONNX_INT8])
    return {"files": dict(FILES), "opset": _opset(fp32), "fused_operators": fused}


def fuse_transformer_ops(path: str | Path, *, num_heads: int, hidden_size: int, log: Callable[[str], None] = print) -> dict[str, int]:
    """Rewrite the fp32 graph in place with ONNX Runtime's BERT fusions (attention, skip
    LayerNorm, bias + GELU): fewer, larger kernels, which is what short requests are bound by.

    Returns the fused operator counts (empty when nothing fused; the graph is then
    left as exported). The equivalence check afterwards covers the fused graph.
    """
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1)
    except Exception as exc:  # noqa: BLE001 - an optional speed-up; the unfused graph stays valid
        log(f"graph fusion skipped: {type(exc).__name__}: {exc}")
        return {}
    stats = {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n}
    if stats:
        onnx.save(optimized.model, str(path))
    return stats


def quantize_int8(fp32_path: str | Path, output: str | Path) -> Path:
    """Dynamic int8 quantization of the weight products (activations quantized per call).

    On the fused graph: each Attention node's QKV projection (QAttention) and each
    weight MatMul except the feed-forward down-projections, whose input (the GELU
    output) has the outlier channels that a per-tensor activation scale handles worst;
    activation x activation products inside attention stay fp32. Measured on the
    1,199 requests of the Banking77 benchmark's calibration split (held out from
    training; test not used), top-1 agreement with the fp32 graph / batch throughput
    on 2 cores: this rule 99.83% / 445 ex/s; every weight product 99.58% / 507 ex/s;
    MatMuls only, attention in fp32, 99.17% / 514 ex/s; fp32 257 ex/s. The rule is
    fixed here, not tuned per model; the equivalence gate then decides whether a
    given model may serve it.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_path)).graph
    weights = {tensor.name for tensor in graph.initializer}
    producer = {name: node.op_type for node in graph.node for name in node.output}
    chosen = [
        node.name
        for node in graph.node
        if node.op_type == "Attention"
        or (node.op_type == "MatMul" and node.input[1] in weights and producer.get(node.input[0]) not in GELU_OPS)
    ]
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" advice, logged on the root logger at every call
    try:
        quantize_dynamic(
            str(fp32_path),
            str(output),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_quantize=chosen,
            per_channel=True,
            # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().setLevel(quiet)
    return Path(output)


@dataclass
class Equivalence:
    """How a candidate backend compares with eager PyTorch on labeled examples."""

    backend: str
    examples: int
    top1_agreement: float
    decision_agreement: float
    max_score_difference: float
    reference_accuracy: float
    accuracy: float
    accuracy_delta: float
    passed: bool

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare(reference, candidate, texts: Sequence[str], labels: Sequence[str]) -> Equivalence:
    """Scores, top-1 labels and decisions of two routers (same bundle, different backends)."""
    ref_scored, cand_scored = reference.score(texts), candidate.score(texts)
    ref_top = ref_scored.probabilities.argmax(axis=1)
    cand_top = cand_scored.probabilities.argmax(axis=1)
    truth = np.array([reference.labels.index(label) if label in reference.labels else -1 for label in labels])
    same_decisions = sum(
        (a.decision, a.team) == (b.decision, b.team)
        for a, b in ((reference.decide_scored(ref_scored, i), candidate.decide_scored(cand_scored, i)) for i in range(len(texts)))
    )
    agreement = float((ref_top == cand_top).mean())
    ref_accuracy, accuracy = float((ref_top == truth).mean()), float((cand_top == truth).mean())
    return Equivalence(
        backend=candidate.backend.name,
        examples=len(texts),
        top1_agreement=agreement,
        decision_agreement=same_decisions / len(texts),
        max_score_difference=float(np.abs(ref_scored.probabilities - cand_scored.probabilities).max()),
        reference_accuracy=ref_accuracy,
        accuracy=accuracy,
        accuracy_delta=accuracy - ref_accuracy,
        passed=agreement >= MIN_AGREEMENT and ref_accuracy - accuracy <= MAX_ACCURACY_DROP,
    )


def prepare_onnx(
    bundle_dir: str | Path,
    *,
    texts: Sequence[str] = (),
    labels: Sequence[str] = (),
    num_threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Export fp32 and int8 models into the bundle, check them on (texts, labels), record it all.

    Returns the manifest's new `serving` record. Without labeled texts the
    files are exported but int8 stays unapproved (the fp32 model can still be
    served: it matches PyTorch to float rounding).
    """
    from sav_router.model.backends import certified_backend, load_backend
    from sav_router.model.router import Router, load_ood

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    certified = certified_backend(manifest)
    kept = _keep_certified(bundle_dir, manifest, certified)
    exported = export_variants(bundle_dir, log=log)
    if kept is not None:
        kept.restore(log)
    record = onnx_record(manifest)
    previous_checks = dict(record.get("equivalence") or {})
    record.update(exported, equivalence={})
    if certified in previous_checks:
        record["equivalence"][certified] = previous_checks[certified]  # kept until re-checked below
    manifest.serving["onnx"] = record
    if texts:
        reference = Router(manifest, load_backend(TORCH, bundle_dir, manifest, num_threads=num_threads), load_ood(bundle_dir, manifest))
        for variant in (ONNX, ONNX_INT8):
            backend = OnnxBackend(bundle_dir, manifest, variant=variant, num_threads=num_threads, require_approval=False)
            result = compare(reference, Router(reference.manifest, backend, reference.ood), texts, labels)
            record["equivalence"][variant] = {**result.to_dict(), "min_agreement": MIN_AGREEMENT, "max_accuracy_drop": MAX_ACCURACY_DROP}
            log(
                f"{variant}: top-1 agreement {result.top1_agreement:.4f}, decisions {result.decision_agreement:.4f}, "
                f"max score diff {result.max_score_difference:.2e}, accuracy {result.accuracy:.4f} "
                f"(torch {result.reference_accuracy:.4f}) -> {'approved' if result.passed else 'NOT approved'}"
            )
    approved = [v for v in (ONNX_INT8, ONNX) if record["equivalence"].get(v, {}).get("passed")]
    previous = manifest.serving.get("backend", TORCH)
    if previous in FILES:
        previous = "torch"  # a re-export voids earlier approvals
    manifest.serving["backend"] = approved[0] if approved else previous
    if certified != manifest.serving["backend"]:
        log(f"note: this bundle's promise was certified on the {certified} backend, which serves it by default; "
            f"{manifest.serving['backend']} is approved by the gate but not covered by the promise (`sav-router recalibrate` certifies a new sample on it)")
    write_manifest(bundle_dir, manifest)
    return manifest.serving


class _Kept:
    """A certified ONNX file set aside before a re-export, put back if the re-export changed it."""

    def __init__(self, path: Path, digest: str) -> None:
        self.path, self.digest = path, digest
        self.backup = path.with_name(path.name + ".certified")
        shutil.copy2(path, self.backup)

    def restore(self, log: Callable[[str], None]) -> None:
        if file_sha256(self.path) != self.digest:
            log(f"{self.path.name}: the re-export differs from the certified file; the certified one is kept (its promise holds for it)")
            os.replace(self.backup, self.path)
        else:
            self.backup.unlink()


def _keep_certified(bundle_dir: Path, manifest, certified: str) -> "_Kept | None":
    digest = (manifest.serving.get("certification") or {}).get("sha256")
    path = bundle_dir / FILES.get(certified, "")
    return _Kept(path, digest) if certified in FILES and digest and path.is_file() else None


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))
