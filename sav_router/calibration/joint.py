"""Joint Learn-then-Test: novelty threshold, confidence threshold and margin together.

When `calibrate` rows exist they are a random sample of live traffic, off-topic
requests included (answered out of scope, or with a label the model was not
trained on). Routing one of those is a misroute, so here an error is a routed
row whose label is wrong **or** out of scope, and the promise covers traffic
like that sample, off-topic share included.

The family of hypotheses is a small grid: novelty thresholds at fixed
quantiles of the calibrate rows' novelty scores (labels unused, so the test
stays conditional on the scores) times the candidate margins. For each grid
point the confidence threshold is chosen by the fixed sequence of
`thresholds.fixed_sequence_threshold` (strictest first, stop at the first
failure) at level (1 - confidence) / grid size: Bonferroni over the grid,
fixed sequence inside each point, so the family-wise error is at most
1 - confidence and the grid point that routes the most can be kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sav_router.calibration.temperature import expected_calibration_error, fit_temperature, softmax
from sav_router.calibration.thresholds import (
    ROUTES_NOTHING,
    CalibrationResult,
    SequenceResult,
    fixed_sequence_threshold,
    routed_statistics,
)

METHOD = "joint learn-then-test: Bonferroni over (novelty quantile x margin), fixed sequence on confidence, Clopper-Pearson"
# Quantiles of the calibrate rows' novelty scores tried as the novelty threshold (1.0: no filter
# beyond the largest score). Seven points down to 0.4: on the Banking77 dev protocol the confident
# errors are almost all unseen-intent requests close to annotated ones, and only novelty
# thresholds near the sample's median filter them (benchmarks/novelty_dev.py, BENCHMARKS.md);
# Bonferroni over 7 costs about 37 more perfect rows before anything can be routed at 0.95.
NOVELTY_QUANTILES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def select_joint(
    conf: np.ndarray,
    gap: np.ndarray,
    correct: np.ndarray,
    novelty: np.ndarray,
    *,
    target: float,
    confidence: float,
    margins: Sequence[float],
    novelty_quantiles: Sequence[float] = NOVELTY_QUANTILES,
) -> tuple[tuple[float, float, SequenceResult] | None, list[float], float]:
    """The grid search on scores: (novelty threshold, margin, confidence-threshold result) or None.

    `correct` must be False for out-of-scope rows. Returns the best point (most
    routed), the novelty thresholds tried and the per-point test level.
    """
    novelty_thresholds = sorted({float(np.quantile(novelty, q)) for q in novelty_quantiles}, reverse=True)
    grid = [(t, m) for t in novelty_thresholds for m in margins]
    level = 1.0 - (1.0 - confidence) / len(grid)
    best = None
    for novelty_threshold, margin in grid:
        eligible = (novelty <= novelty_threshold) & (gap >= margin)
        result = fixed_sequence_threshold(conf[eligible], correct[eligible], target=target, confidence=level)
        if result is not None and (best is None or result.routed > best[2].routed):
            best = (novelty_threshold, margin, result)
    return best, novelty_thresholds, level


def calibrate_joint(
    logits: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    novelty: np.ndarray,
    *,
    target_precision: float = 0.95,
    confidence: float = 0.95,
    margins: Sequence[float] = (0.1,),
    novelty_quantiles: Sequence[float] = NOVELTY_QUANTILES,
) -> CalibrationResult:
    """Pick (novelty threshold, margin, confidence threshold) on a traffic sample.

    `labels`: index into `label_names`, or -1 for an out-of-scope row (never
    right to route). `novelty`: the detector's score per row (higher = more
    novel). The temperature is fitted on the in-scope rows.
    """
    if not 0 < target_precision < 1 or not 0 < confidence < 1:
        raise ValueError("target precision and confidence must be in (0, 1)")
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    novelty = np.asarray(novelty, dtype=np.float64)
    if not (len(logits) == len(labels) == len(novelty)):
        raise ValueError("logits, labels and novelty scores must have one row per calibrate request")
    n = len(labels)
    in_scope = labels >= 0
    if in_scope.sum() < 2:
        raise ValueError("joint calibration needs in-scope calibrate rows to fit the temperature")
    temperature = fit_temperature(logits[in_scope], labels[in_scope])
    probs = softmax(logits, temperature)
    ece_before = expected_calibration_error(softmax(logits[in_scope], 1.0), labels[in_scope])
    ece_after = expected_calibration_error(probs[in_scope], labels[in_scope])
    predicted = probs.argmax(axis=1)
    correct = in_scope & (predicted == labels)
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate([np.zeros((n, 1)), probs], axis=1)
    conf, gap = top2[:, -1], top2[:, -1] - top2[:, 0]

    margins = sorted(set(float(m) for m in margins)) or [0.0]
    best, novelty_thresholds, level = select_joint(
        conf, gap, correct, novelty, target=target_precision, confidence=confidence, margins=margins, novelty_quantiles=novelty_quantiles
    )

    base = dict(
        temperature=temperature,
        target_precision=target_precision,
        confidence=confidence,
        n_calibration=n,
        ece_before=ece_before,
        ece_after=ece_after,
        margins_tried=margins,
        method=METHOD,
        out_of_scope=int((~in_scope).sum()),
        novelty_thresholds_tried=novelty_thresholds,
    )
    if best is None:
        return CalibrationResult(
            margin=max(margins), **ROUTES_NOTHING,
            ood_threshold=min(novelty_thresholds), ood_excluded=int((novelty > min(novelty_thresholds)).sum()),
            message=(
                f"no (novelty, confidence, margin) setting reaches precision {target_precision} with {confidence:.0%} "
                f"confidence on {n} calibrate rows ({int((~in_scope).sum())} out of scope): the bundle routes nothing"
            ),
            **base,
        )
    novelty_threshold, margin, chosen = best
    routed_mask = (novelty <= novelty_threshold) & (gap >= margin) & (conf >= chosen.threshold)
    stats = routed_statistics(routed_mask, correct, confidence=level)
    routed = stats["routed"]
    return CalibrationResult(
        threshold=chosen.threshold,
        margin=margin,
        label_thresholds={},
        guarantee_met=True,
        **stats,
        ood_threshold=novelty_threshold,
        ood_excluded=int((novelty > novelty_threshold).sum()),
        routed_out_of_scope=int((routed_mask & ~in_scope).sum()),
        message=(
            f"novelty <= {novelty_threshold:.4f}, threshold {chosen.threshold:.4f} (margin {margin}) route {routed}/{n} "
            f"calibrate rows ({int((~in_scope).sum())} out of scope); precision >= {target_precision} with "
            f"{confidence:.0%} confidence on traffic like this sample, off-topic share included"
        ),
        **base,
    )
