"""Open-set analysis: would a stricter OOD threshold restore the precision promise?

Reuses the open-set model and data of `benchmarks/banking77.py` (runs/banking77/model_open,
train_open.csv). For each in-distribution quantile, the OOD threshold and then the confidence
threshold (Learn-then-Test, target 0.95) are re-chosen on the calibration split; the official test
split (a quarter of it about intents never annotated) gives routed precision and coverage.

    .venv/bin/python benchmarks/open_set_ood_sweep.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sav_router.calibration import calibrate, softmax  # noqa: E402
from sav_router.data.annotations import Columns, load_annotations  # noqa: E402
from sav_router.data.splits import stratified_split  # noqa: E402
from sav_router.policy import RoutingPolicy, decide  # noqa: E402
from sav_router.router import Router  # noqa: E402

COLUMNS = Columns(text="text", label="category")
RUN = REPO / "runs" / "banking77"
TEST = REPO.parent / "shared" / "datasets" / "banking77" / "test.csv"


def main() -> None:
    router = Router.load(RUN / "model_open")
    teach = load_annotations([RUN / "train_open.csv"], columns=COLUMNS).records
    calibration = stratified_split(teach, calibration=0.12, validation=0.04, seed=13).calibration
    index = {label: i for i, label in enumerate(router.labels)}
    cal = router.score([r.text for r in calibration])
    cal_gold = np.array([index[r.label] for r in calibration])
    test = load_annotations([TEST], columns=COLUMNS).records
    scored = router.score([r.text for r in test])
    gold = [r.label for r in test]
    out_of_scope = np.array([g not in index for g in gold])
    print("| OOD quantile | routed precision | coverage | in-scope coverage | out-of-scope escalated |")
    print("|---|---|---|---|---|")
    for quantile in (0.99, 0.95, 0.90, 0.80):
        ood_threshold = float(np.quantile(cal.ood_scores, quantile))
        result = calibrate(cal.logits, cal_gold, router.labels, target_precision=0.95, in_distribution=cal.ood_scores <= ood_threshold)
        policy = RoutingPolicy(threshold=result.threshold, margin=result.margin, label_thresholds=result.label_thresholds, ood_threshold=ood_threshold)
        probabilities = softmax(scored.logits, result.temperature)
        decisions = [
            decide(dict(zip(router.labels, probabilities[i].tolist())), policy, ood_score=float(scored.ood_scores[i])) for i in range(len(gold))
        ]
        routed = np.array([d.routed for d in decisions])
        correct = np.array([d.label == g for d, g in zip(decisions, gold)])
        print(
            f"| {quantile} | {correct[routed].mean():.4f} | {routed.mean():.4f} | {routed[~out_of_scope].mean():.4f} | {(~routed[out_of_scope]).mean():.4f} |"
        )


if __name__ == "__main__":
    main()
