"""The calibration sample's fingerprint, stored in the manifest for the monitor.

The promise holds on traffic like the calibration sample. What the monitor
compares live decisions with: the share of calibration requests the novelty
detector flags, and (sub-sampled, sorted) their top-1 confidences and novelty
scores. Pure Python once built: the AWS monitor reads it from a manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_POINTS = 400  # values kept per distribution: the KS test's reference (manifest stays small)


def _thin(values: Sequence[float]) -> list[float]:
    ordered = sorted(float(v) for v in values)
    if len(ordered) <= MAX_POINTS:
        return [round(v, 6) for v in ordered]
    step = (len(ordered) - 1) / (MAX_POINTS - 1)
    return [round(ordered[round(i * step)], 6) for i in range(MAX_POINTS)]


def drift_reference(scaled_logits, novelty_scores, novelty_threshold: float | None) -> dict[str, Any]:
    """From calibration rows: temperature-scaled logits and novelty scores."""
    import numpy as np

    logits = np.asarray(scaled_logits, dtype=np.float64)
    if len(logits) == 0:
        return {"n": 0}
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    confidence = (shifted / shifted.sum(axis=1, keepdims=True)).max(axis=1)
    novelty = np.asarray(novelty_scores, dtype=np.float64)
    flagged = int((novelty > novelty_threshold).sum()) if novelty_threshold is not None else 0
    return {
        "n": int(len(logits)),
        "flagged": flagged,
        "flagged_share": round(flagged / len(logits), 6),
        "confidence": _thin(confidence.tolist()),
        "novelty": _thin(novelty.tolist()),
    }
