"""Which backend a new bundle is certified on: export, check against PyTorch, choose (train and recalibrate).

`certify_backend` exports the network to ONNX (fp32, fused, and int8) into the
bundle folder being written, runs the equivalence gate of `onnx_export` (top-1
agreement >= 99.5 % and accuracy within 0.5 point of eager PyTorch) on held-out
rows, and chooses the fastest backend that passes (`PREFERENCE`: int8, fp32,
torch), or the one asked for. The caller then computes the temperature, the
thresholds, the promise, the monitor's reference and the check report from that
backend's scores, and records it as `serving.certified_backend`: the promise
holds for the model that answers, by construction.

The choice reads the gate rows' texts and labels, but passing depends on their
labels through accuracy only, and agreement >= 99.5 % already bounds an
accuracy change to 0.5 point on the same rows: the choice is a function of the
rows' texts. The order is fixed (measured once, BENCHMARKS.md), not timed per
run, so the same data gives the same bundle on a busy or an idle machine; the
throughput seen on the gate rows is recorded for information.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sav_router.model.backends import AUTO, BACKENDS, ONNX, ONNX_INT8, PREFERENCE, TORCH

# the fastest ONNX backend that passes (onnx-int8, then onnx); none passing is an error, never torch: what the
# serving image (no torch) must be able to serve. fp32 ONNX agrees with PyTorch to float rounding, so it failing is an export defect.
ONNX_AUTO = "onnx-auto"
CHOICES = (AUTO, ONNX_AUTO, *BACKENDS)
Forward = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


class CertificationError(ValueError):
    """The backend asked for cannot be certified (it failed the gate, or ONNX Runtime is missing)."""


@dataclass
class Certification:
    """The chosen backend, its forward function, and the `serving` record of the manifest."""

    backend: str
    forward: Forward
    serving: dict[str, Any]
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # gate rows, per backend (torch included)
    gate_texts: list[str] = field(default_factory=list)

    def record_decisions(self, manifest: Any, detector: Any) -> None:
        """Decision agreement with PyTorch on the gate rows under the final policy (known only once calibrated)."""
        from sav_router.model.router import Router, Scored

        if TORCH not in self.outputs or not self.gate_texts:
            return
        router = Router(manifest, backend=None, ood=detector)  # type: ignore[arg-type] - decisions only, no forward

        def decisions(logits: np.ndarray, pooled: np.ndarray) -> list[tuple]:
            from sav_router.calibration.temperature import softmax

            scored = Scored(probabilities=softmax(logits, manifest.temperature), logits=logits, embeddings=pooled,
                            ood_scores=detector.score(pooled) if detector is not None else None)
            return [(d.decision, d.team) for d in (router.decide_scored(scored, i) for i in range(len(logits)))]

        reference = decisions(*self.outputs[TORCH])
        for name, (logits, pooled) in self.outputs.items():
            if name == TORCH:
                continue
            same = sum(a == b for a, b in zip(reference, decisions(logits, pooled)))
            self.serving["onnx"]["equivalence"][name]["decision_agreement"] = round(same / len(reference), 6)


def gate(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray], truth: np.ndarray) -> dict[str, Any]:
    """The equivalence gate of `onnx_export.compare` on raw outputs (scores: softmax at temperature 1, before calibration)."""
    from sav_router.calibration.temperature import softmax
    from sav_router.model.backends.onnx_export import MAX_ACCURACY_DROP, MIN_AGREEMENT

    ref_p, cand_p = softmax(reference[0]), softmax(candidate[0])
    ref_top, cand_top = ref_p.argmax(axis=1), cand_p.argmax(axis=1)
    agreement = float((ref_top == cand_top).mean())
    ref_accuracy, accuracy = float((ref_top == truth).mean()), float((cand_top == truth).mean())
    return {
        "examples": int(len(truth)),
        "top1_agreement": round(agreement, 6),
        "max_score_difference": round(float(np.abs(ref_p - cand_p).max()), 6),
        "reference_accuracy": round(ref_accuracy, 6),
        "accuracy": round(accuracy, 6),
        "accuracy_delta": round(accuracy - ref_accuracy, 6),
        "passed": agreement >= MIN_AGREEMENT and ref_accuracy - accuracy <= MAX_ACCURACY_DROP,
        "min_agreement": MIN_AGREEMENT,
        "max_accuracy_drop": MAX_ACCURACY_DROP,
    }


def onnx_available() -> str | None:
    """None when ONNX export and inference can run here, else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"ONNX Runtime is not installed ({exc})"
    return None


def certify_backend(
    folder: str | Path,
    network: Any,
    tokenizer: Any,
    *,
    labels: Sequence[str],
    max_length: int,
    gate_texts: Sequence[str],
    gate_labels: Sequence[str],
    reference_forward: Forward,
    requested: str = AUTO,
    num_threads: int | None = None,
    log: Callable[[str], None] = print,
) -> Certification:
    """Export the ONNX variants into `folder` (the bundle being written: tokenizer and config already there),
    check each against `reference_forward` (eager PyTorch) on the gate rows, and choose.

    `requested`: "auto" (the fastest that passes; torch when none does or ONNX Runtime is
    missing), "onnx-auto" (the fastest ONNX backend that passes; CertificationError when none
    does), or a backend name (refused with CertificationError if it fails the gate).
    """
    from sav_router.model.backends import file_sha256
    from sav_router.model.backends.onnx_export import FILES, MAX_ACCURACY_DROP, MIN_AGREEMENT, export_variants
    from sav_router.model.backends.onnx_backend import OnnxBackend

    if requested not in CHOICES:
        raise CertificationError(f"unknown serving backend {requested!r} (choose from {', '.join(CHOICES)})")
    folder = Path(folder)
    selection: dict[str, Any] = {"requested": requested, "rule": "fastest passing the gate: " + " > ".join(PREFERENCE),
                                 "gate_rows": len(gate_texts)}
    torch_only = {"backend": TORCH, "certified_backend": TORCH, "certification": selection}
    if requested == TORCH:
        selection["reason"] = "asked for"
        return Certification(TORCH, reference_forward, torch_only)
    missing = onnx_available()
    if missing is not None:
        if requested != AUTO:
            raise CertificationError(f"serving backend {requested!r} asked for, but {missing}")
        selection["reason"] = missing
        log(f"serving backend: torch ({missing})")
        return Certification(TORCH, reference_forward, torch_only)
    if not gate_texts:
        if requested != AUTO:
            raise CertificationError(f"serving backend {requested!r} asked for, but there are no held-out rows to check it against PyTorch")
        selection["reason"] = "no held-out rows to check the ONNX models against PyTorch"
        return Certification(TORCH, reference_forward, torch_only)

    started = time.perf_counter()
    record = export_variants(folder, network, tokenizer, log=log) | {"equivalence": {}}
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index.get(str(label), -1) for label in gate_labels])
    timer = time.perf_counter()
    outputs = {TORCH: reference_forward(list(gate_texts))}
    speeds = {TORCH: len(gate_texts) / max(time.perf_counter() - timer, 1e-9)}
    backends = {}
    for variant in (ONNX, ONNX_INT8):
        backends[variant] = OnnxBackend.from_file(folder / FILES[variant], folder, name=variant, max_length=max_length,
                                                  num_labels=len(labels), num_threads=num_threads)
        timer = time.perf_counter()
        outputs[variant] = backends[variant].forward(list(gate_texts))
        speeds[variant] = len(gate_texts) / max(time.perf_counter() - timer, 1e-9)
        result = gate(outputs[TORCH], outputs[variant], truth)
        record["equivalence"][variant] = result | {"backend": variant}
        log(f"  {variant}: top-1 agreement {result['top1_agreement']:.4f} on {len(gate_texts)} held-out rows, max score diff "
            f"{result['max_score_difference']:.2e}, accuracy {result['accuracy']:.4f} (torch {result['reference_accuracy']:.4f}) "
            f"-> {'passes' if result['passed'] else 'fails'} the gate")
    passing = [v for v in PREFERENCE if v == TORCH or record["equivalence"][v]["passed"]]
    if requested == AUTO:
        chosen = passing[0]
        selection["reason"] = "fastest passing the gate" if chosen != TORCH else "no ONNX model passed the gate"
    elif requested == ONNX_AUTO:
        onnx_passing = [v for v in passing if v != TORCH]
        if not onnx_passing:
            checks = "; ".join(f"{v}: top-1 agreement {record['equivalence'][v]['top1_agreement']:.4f}, accuracy "
                               f"{record['equivalence'][v]['accuracy_delta']:+.4f}" for v in (ONNX_INT8, ONNX))
            raise CertificationError(
                f"serving backend {ONNX_AUTO!r}: no ONNX model passes the equivalence gate with PyTorch ({checks}; at least "
                f"{MIN_AGREEMENT} agreement and at most -{MAX_ACCURACY_DROP} accuracy needed). fp32 ONNX should agree with "
                f"PyTorch to float rounding: this is an ONNX export defect, not a model to serve with torch"
            )
        chosen, selection["reason"] = onnx_passing[0], "fastest ONNX passing the gate (onnx-auto)"
    elif requested in passing:
        chosen, selection["reason"] = requested, "asked for (passes the gate)"
    else:
        check = record["equivalence"][requested]
        raise CertificationError(
            f"serving backend {requested!r} fails the equivalence gate (top-1 agreement {check['top1_agreement']:.4f} < "
            f"{check['min_agreement']}, or accuracy {check['accuracy_delta']:+.4f} beyond -{check['max_accuracy_drop']}): "
            f"choose auto, onnx or torch"
        )
    selection["throughput_on_gate_rows"] = {name: round(speed, 1) for name, speed in speeds.items()}
    selection["seconds"] = round(time.perf_counter() - started, 2)
    serving: dict[str, Any] = {"backend": chosen, "certified_backend": chosen, "certification": selection, "onnx": record}
    if chosen in FILES:
        selection |= {"file": FILES[chosen], "sha256": file_sha256(folder / FILES[chosen])}
    log(f"serving backend: {chosen} ({selection['reason']}); thresholds and promise computed on its scores")
    forward = reference_forward if chosen == TORCH else backends[chosen].forward
    return Certification(chosen, forward, serving, outputs=outputs, gate_texts=list(gate_texts))
