"""PNG plots for the evaluation report (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sav_router.evaluation.metrics import Evaluation, risk_coverage  # noqa: E402


def _reliability(ax, confidence: np.ndarray, correct: np.ndarray, label: str, bins: int = 15) -> None:
    edges = np.linspace(0, 1, bins + 1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    centers, accuracy = [], []
    for b in range(bins):
        mask = which == b
        if mask.sum() >= 3:
            centers.append(confidence[mask].mean())
            accuracy.append(correct[mask].mean())
    ax.plot(centers, accuracy, marker="o", label=label)
    ax.set_xticks(edges[::3])


def write_all(evaluation: Evaluation, output_dir: Path) -> list[str]:
    report = evaluation.report
    names = []

    coverage, risk, aurc = risk_coverage(evaluation.confidence, evaluation.correct)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(coverage, risk, label=f"model (AURC {aurc:.4f})")
    ax.axvline(report["coverage"], color="grey", linestyle="--", label=f"operating coverage {report['coverage']:.2f}")
    target = report.get("target_precision")
    if target:
        ax.axhline(1 - target, color="red", linestyle=":", label=f"target risk {1 - target:.2f}")
    ax.set_xlabel("coverage (share routed, most confident first)")
    ax.set_ylabel("selective risk (error rate of routed)")
    ax.set_title("Risk-coverage (in-scope requests)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output_dir / "risk_coverage.png", dpi=110)
    plt.close(fig)
    names.append("risk_coverage.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    _reliability(ax, evaluation.confidence_raw, evaluation.correct, f"before temperature (ECE {report['ece']['before_temperature']})")
    _reliability(ax, evaluation.confidence, evaluation.correct, f"after temperature (ECE {report['ece']['after_temperature']})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output_dir / "reliability.png", dpi=110)
    plt.close(fig)
    names.append("reliability.png")

    n = len(evaluation.labels)
    size = min(16, 4 + 0.18 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    matrix = evaluation.confusion.astype(float)
    rows = matrix.sum(axis=1, keepdims=True)
    ax.imshow(np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0), cmap="Blues", vmin=0, vmax=1)
    font = max(4, 9 - n // 12)
    ax.set_xticks(range(n), evaluation.labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), evaluation.labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("Confusion matrix (row-normalized)")
    fig.tight_layout()
    fig.savefig(output_dir / "confusion_matrix.png", dpi=110)
    plt.close(fig)
    names.append("confusion_matrix.png")
    return names
