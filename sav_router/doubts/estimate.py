"""The estimated label-error rate of a sample scored out of sample (calibrate or check rows: never trained on)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sav_router.doubts.find import find_doubts

SAMPLE = "sample"


def label_error_estimate(probabilities: np.ndarray, labels: np.ndarray, label_names: Sequence[str], embeddings: np.ndarray) -> dict[str, Any] | None:
    """{rows, doubts, rate, interval, confidence} of the in-scope rows (label >= 0); None when there are none."""
    labels = np.asarray(labels)
    rows = labels >= 0
    if rows.sum() < 2:
        return None
    report = find_doubts(probabilities[rows], labels[rows], label_names, embeddings[rows], splits=[SAMPLE] * int(rows.sum()))
    return report.by_split[SAMPLE] | {"method": report.method.replace("k-fold logistic regression on frozen base-model embeddings",
                                                                       "the bundle's own scores of rows it never trained on")}


def unreliable_promise(estimate: Mapping[str, Any] | None, target_precision: float) -> bool:
    """Label noise as large as half the promise's error budget: the certified precision is measured against labels that wrong."""
    return estimate is not None and estimate["rate"] >= (1.0 - target_precision) / 2.0
