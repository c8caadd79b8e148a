"""Temperature scaling and threshold selection with a precision guarantee.

The confidence threshold is chosen by Learn-then-Test (Angelopoulos et al.,
2021): candidate thresholds are tested in a fixed sequence, from the strictest
to the loosest, against the null hypothesis "precision of the routed set <
target", with an exact Clopper-Pearson lower bound. The sequence stops at the
first threshold that fails; the loosest one that passed is kept. The
family-wise error is at most ``1 - confidence``, so with that confidence the
routed precision on data like the calibration split is at least the target.

Candidates are the confidences of the n-th most confident calibration
examples for a grid of n (from max(n_min, 10% of the set) up, n_min being the
smallest count whose perfect record could pass), which depends on the scores
but not on the labels (the test is conditional on the scores). Temperature scaling is monotone, so
it does not change which sets are tested. When several ambiguity margins are
tried, each margin's sequence runs at level (1 - confidence) / n_margins
(Bonferroni), so picking the best margin keeps the guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from sav_router.calibration.temperature import expected_calibration_error, fit_temperature, softmax
from sav_router.core.policy import RoutingPolicy
from sav_router.core.stats import clopper_pearson_lower

ROUTE_NOTHING = 2.0  # a threshold no probability reaches
METHOD = "learn-then-test fixed sequence, Clopper-Pearson lower bound"


def min_trials(target: float, confidence: float) -> int:
    """Smallest routed count whose perfect record could pass the test."""
    if target <= 0:
        return 1
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log(target)))


@dataclass
class SequenceResult:
    threshold: float
    routed: int
    correct: int
    lower_bound: float
    tested: int


def fixed_sequence_threshold(
    confidence_scores: np.ndarray,
    correct: np.ndarray,
    *,
    target: float,
    confidence: float,
    max_candidates: int = 200,
) -> SequenceResult | None:
    """Loosest threshold whose routed set passes, testing strictest first.

    Returns None when even the strictest candidate fails (route nothing).
    """
    scores = np.asarray(confidence_scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(scores)
    start = min_trials(target, confidence)
    if n < start:
        return None
    # Start at the strictest threshold routing max(n_min, 10%) of the set: a lone error
    # among the very first few most confident examples should not end the sequence.
    start = max(start, n // 10)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    cumulative_correct = np.cumsum(correct[order])
    step = max(1, (n - start) // max_candidates)
    best: SequenceResult | None = None
    tested = 0
    counts = list(range(start, n + 1, step))
    if counts[-1] != n:
        counts.append(n)  # always test routing every eligible example last
    for count in counts:
        threshold = float(sorted_scores[count - 1])
        # Ties: everything at or above the threshold is routed.
        routed = int(np.searchsorted(-sorted_scores, -threshold, side="right"))
        hits = int(cumulative_correct[routed - 1])
        bound = clopper_pearson_lower(hits, routed, confidence)
        tested += 1
        if bound < target:
            break
        best = SequenceResult(threshold=threshold, routed=routed, correct=hits, lower_bound=bound, tested=tested)
    if best is not None:
        best.tested = tested
    return best


@dataclass
class CalibrationResult:
    """What calibration decided, and the statistics that justify it."""

    temperature: float
    threshold: float
    margin: float
    label_thresholds: dict[str, float]
    target_precision: float
    confidence: float
    guarantee_met: bool
    n_calibration: int
    routed: int
    correct: int
    lower_bound: float
    empirical_precision: float
    coverage: float
    ece_before: float
    ece_after: float
    ood_excluded: int = 0
    margins_tried: list[float] = field(default_factory=list)
    method: str = METHOD
    message: str = ""
    # Joint calibration on a traffic sample (`sav_router.calibration.joint`) also chooses the
    # novelty threshold and counts out-of-scope rows; None / 0 for teach-carved calibration.
    ood_threshold: float | None = None
    # With outlier exposure, the out-of-scope neighbour test's threshold (escalate above it; None: no vote test).
    vote_threshold: int | None = None
    out_of_scope: int = 0
    routed_out_of_scope: int = 0
    novelty_thresholds_tried: list[float] = field(default_factory=list)
    # Pareto testing (joint calibration): rows of the sample that tuned (the rest certified),
    # its out-of-scope rows kept as outlier exposure, grid size and Pareto-front size.
    tuning_rows: int = 0
    exposure_rows: int = 0
    settings_tried: int = 0
    front_size: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# What a result that routes nothing reports (calibration found no threshold that passes).
ROUTES_NOTHING = dict(threshold=ROUTE_NOTHING, label_thresholds={}, guarantee_met=False,
                      routed=0, correct=0, lower_bound=0.0, empirical_precision=0.0, coverage=0.0)


def routed_statistics(routed_mask: np.ndarray, correct: np.ndarray, *, confidence: float) -> dict[str, float | int]:
    """Counts, bound and rates of the routed set a chosen threshold gives on the calibration rows."""
    n = len(routed_mask)
    routed, hits = int(routed_mask.sum()), int((routed_mask & correct).sum())
    return dict(routed=routed, correct=hits, lower_bound=clopper_pearson_lower(hits, routed, confidence),
                empirical_precision=hits / routed if routed else 0.0, coverage=routed / n if n else 0.0)


def vote_threshold_for(votes: np.ndarray, budget: float, vote_k: int) -> int | None:
    """The smallest vote count t whose exceedance (votes > t) among held-out in-scope rows is within `budget`.

    None when even t = vote_k - 1 exceeds it (the vote test never fires: no row has more than vote_k votes).
    """
    votes = np.asarray(votes)
    for t in range(vote_k):
        if len(votes) and float((votes > t).mean()) <= budget:
            return t
    return None


def confidence_and_gap(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the top probability and its lead over the runner-up (the margin `decide` checks)."""
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate([np.zeros((len(probs), 1)), probs], axis=1)
    return top2[:, -1], top2[:, -1] - top2[:, 0]


def _route_mask(probs: np.ndarray, threshold: float, margin: float, label_thresholds: np.ndarray | None) -> np.ndarray:
    conf, gap = confidence_and_gap(probs)
    needed = np.full(len(probs), threshold)
    if label_thresholds is not None:
        needed = np.maximum(needed, label_thresholds[probs.argmax(axis=1)])
    return (conf >= needed) & (gap >= margin)


def calibrate(
    logits: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    *,
    target_precision: float = 0.95,
    confidence: float = 0.95,
    margins: Sequence[float] = (0.1,),
    in_distribution: np.ndarray | None = None,
    min_label_support: int | None = None,
) -> CalibrationResult:
    """Fit the temperature, then pick margin, threshold and per-label thresholds.

    `in_distribution` masks calibration examples the OOD detector lets through
    (the others are escalated anyway, so they do not count as routed).
    `min_label_support`: examples predicted as a label needed before that label
    gets its own (tighten-only) threshold; default: twice the minimum run.
    """
    if not 0 < target_precision < 1:
        raise ValueError("target precision must be in (0, 1)")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    temperature = fit_temperature(logits, labels)
    probs_raw = softmax(logits, 1.0)
    probs = softmax(logits, temperature)
    ece_before = expected_calibration_error(probs_raw, labels)
    ece_after = expected_calibration_error(probs, labels)
    allowed = np.ones(n, dtype=bool) if in_distribution is None else np.asarray(in_distribution, dtype=bool)
    predicted = probs.argmax(axis=1)
    correct = predicted == labels
    conf, gap = confidence_and_gap(probs)

    margins = sorted(set(float(m) for m in margins)) or [0.0]
    level = confidence if len(margins) == 1 else 1.0 - (1.0 - confidence) / len(margins)
    best: tuple[int, float, SequenceResult] | None = None
    for margin in margins:
        # Examples failing the margin or the OOD check are escalated whatever the threshold.
        eligible = allowed & (gap >= margin)
        result = fixed_sequence_threshold(conf[eligible], correct[eligible], target=target_precision, confidence=level)
        if result is not None and (best is None or result.routed > best[0]):
            best = (result.routed, margin, result)

    base = dict(
        temperature=temperature,
        target_precision=target_precision,
        confidence=confidence,
        n_calibration=n,
        ece_before=ece_before,
        ece_after=ece_after,
        ood_excluded=int((~allowed).sum()),
        margins_tried=margins,
    )
    if best is None:
        return CalibrationResult(
            margin=max(margins), **ROUTES_NOTHING,
            message=(
                f"no threshold reaches precision {target_precision} with {confidence:.0%} confidence on "
                f"{n} calibration examples: the bundle routes nothing (add data or lower the target)"
            ),
            **base,
        )
    _, margin, chosen = best

    # Per-label thresholds, tighten only: a label with enough calibration data whose
    # own routed precision cannot pass the same test gets a stricter threshold.
    support = min_label_support if min_label_support is not None else 2 * min_trials(target_precision, level)
    label_thresholds: dict[str, float] = {}
    eligible = allowed & (gap >= margin) & (conf >= chosen.threshold)
    for index, name in enumerate(label_names):
        mine = eligible & (predicted == index)
        if mine.sum() < support:
            continue
        own = fixed_sequence_threshold(conf[mine], correct[mine], target=target_precision, confidence=level)
        if own is None:
            label_thresholds[name] = ROUTE_NOTHING
        elif own.routed < mine.sum():  # the label's own test stopped early: tighten it
            label_thresholds[name] = own.threshold

    per_label = np.array([label_thresholds.get(name, 0.0) for name in label_names])
    routed_mask = allowed & _route_mask(probs, chosen.threshold, margin, per_label)
    stats = routed_statistics(routed_mask, correct, confidence=level)
    routed = stats["routed"]
    return CalibrationResult(
        threshold=chosen.threshold,
        margin=margin,
        label_thresholds=label_thresholds,
        guarantee_met=True,
        **stats,
        message=(
            f"threshold {chosen.threshold:.4f} (margin {margin}) routes {routed}/{n} calibration requests; "
            f"precision >= {target_precision} with {confidence:.0%} confidence"
        ),
        **base,
    )


def policy_from_calibration(
    result: CalibrationResult,
    *,
    teams: dict[str, str | None],
    ood_threshold: float | None,
) -> RoutingPolicy:
    return RoutingPolicy(
        threshold=result.threshold,
        margin=result.margin,
        label_thresholds=dict(result.label_thresholds),
        ood_threshold=ood_threshold,
        teams=teams,
    )
