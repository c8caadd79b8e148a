"""Joint calibration on a traffic sample: novelty threshold, confidence threshold and margin together.

When `calibrate` rows exist they are a random sample of live traffic, off-topic
requests included (answered out of scope, or with a label the model was not
trained on). Routing one of those is a misroute, so here an error is a routed
row whose label is wrong **or** out of scope, and the promise covers traffic
like that sample, off-topic share included.

The sample is spent twice, on disjoint rows (Pareto testing, Laufer-Goldshtein
et al., 2023, the split form of Learn-then-Test):

1. A seeded **tuning** part (`TrainConfig.tuning_share`, 40 %) teaches. Its
   out-of-scope rows become outlier exposure of the novelty detector (off-topic
   traffic recurs: a request whose neighbours a reviewer answered out of scope
   is likely off topic too; `model.ood.NearestNeighbourOOD`), the
   temperature is fitted on its in-scope rows, and on it every setting of a
   grid (novelty threshold x margin x confidence threshold) is scored. The
   settings no other beats on both coverage and error form the Pareto front,
   ordered from the safest (least routed) to the boldest.
2. The other, **testing** part certifies: the front is tested in that order,
   against "routed precision < target" with an exact Clopper-Pearson bound, and
   the sequence stops at the first failure (fixed-sequence testing). Nothing
   about the testing rows chose the order, so the family-wise error is at most
   1 - confidence with no Bonferroni correction however fine the grid; of the
   settings that passed, the one routing the most testing rows is kept.

Grid values are quantiles of the whole sample's scores (labels unused). Why the
split and not Bonferroni over a coarse grid on every row (the previous form):
on the Banking77 dev protocol (`benchmarks/traffic_calibration_dev.py`, test
never read) the split form with outlier exposure routes 56 % of traffic on
average over 12 draws, the Bonferroni form 10 % (BENCHMARKS.md, "Open traffic").
The exemplars' own novelty is scored without themselves, so the certifying
rows, the tuning rows and live traffic are scored alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sav_router.calibration.settings import CalibrationSettings
from sav_router.core.stats import clopper_pearson_lower
from sav_router.calibration.temperature import expected_calibration_error, fit_temperature, softmax
from sav_router.calibration.thresholds import (
    ROUTE_NOTHING,
    ROUTES_NOTHING,
    CalibrationResult,
    calibrate,
    confidence_and_gap,
    min_trials,
    routed_statistics,
    vote_threshold_for,
)

METHOD = (
    "pareto testing on a traffic sample: settings (novelty x margin x confidence) ranked on a seeded tuning part, "
    "whose out-of-scope rows are outlier exposure; fixed sequence along that front on the testing part, Clopper-Pearson"
)
NOVELTY_QUANTILES = tuple(float(q) for q in np.round(np.linspace(0.3, 1.0, 36), 4))
CONFIDENCE_QUANTILES = tuple(float(q) for q in np.round(np.linspace(0.0, 0.99, 100), 4))


@dataclass(frozen=True)
class Setting:
    """One candidate policy: route when novelty <= `novelty`, gap >= `margin`, confidence >= `threshold`,
    and (with outlier exposure) out-of-scope votes <= `votes` (None: no vote test)."""

    novelty: float
    margin: float
    threshold: float
    votes: int | None = None

    def novel(self, novelty: np.ndarray, votes: np.ndarray | None = None) -> np.ndarray:
        """Rows a novelty test flags (the distance test, or the vote test)."""
        flagged = novelty > self.novelty
        if self.votes is not None and votes is not None:
            flagged = flagged | (votes > self.votes)
        return flagged

    def routes(self, conf: np.ndarray, gap: np.ndarray, novelty: np.ndarray, votes: np.ndarray | None = None) -> np.ndarray:
        return ~self.novel(novelty, votes) & (gap >= self.margin) & (conf >= self.threshold)


def tuning_mask(n: int, *, share: float, seed: int) -> np.ndarray:
    """A seeded random `share` of n rows (at least one row each side when n >= 2)."""
    if not 0 < share < 1:
        raise ValueError("the tuning share must be in (0, 1)")
    count = min(max(1, round(share * n)), max(n - 1, 1))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:count]] = True
    return mask


def candidate_settings(
    conf: np.ndarray,
    novelty: np.ndarray,
    margins: Sequence[float],
    *,
    votes: np.ndarray | None = None,
    vote_k: int = 10,
    max_novelty: float | None = None,
    max_votes: int | None = None,
) -> list[Setting]:
    """The grid: quantiles of the sample's novelty (distance) and confidence scores, times the margins,
    times (with `votes`) the vote thresholds 0..`max_votes` (None: 0..vote_k - 1 and no vote test).

    `max_novelty` / `max_votes`: the loosest distance / vote thresholds allowed (distance values
    above it are replaced by it), so that neither test is looser than its own in-scope threshold.
    """
    novelty_values = np.quantile(novelty, NOVELTY_QUANTILES)
    if max_novelty is not None:
        novelty_values = np.minimum(novelty_values, max_novelty)
    novelty_values = np.unique(novelty_values)
    confidence_values = np.unique(np.quantile(conf, CONFIDENCE_QUANTILES))
    if votes is None:
        vote_values: list[int | None] = [None]
    else:
        vote_values = [*range(vote_k), None] if max_votes is None else list(range(int(max_votes) + 1))
    return [Setting(float(t), float(m), float(c), v) for t in novelty_values for v in vote_values for m in margins for c in confidence_values]


def _routed_counts(settings: Sequence[Setting], conf, gap, novelty, votes, correct) -> tuple[np.ndarray, np.ndarray]:
    """Routed and correctly routed rows per setting (grouped by their novelty tests and margin: one pass per group)."""
    counts = np.zeros(len(settings), dtype=np.int64)
    hits = np.zeros(len(settings), dtype=np.int64)
    groups: dict[tuple, list[int]] = {}
    for i, setting in enumerate(settings):
        groups.setdefault((setting.novelty, setting.votes, setting.margin), []).append(i)
    for (novelty_t, votes_t, margin), members in groups.items():
        base = ~Setting(novelty_t, margin, 0.0, votes_t).novel(novelty, votes) & (gap >= margin)
        thresholds = np.array([settings[i].threshold for i in members])
        routed = base[:, None] & (conf[:, None] >= thresholds[None, :])
        counts[members] = routed.sum(axis=0)
        hits[members] = (routed & correct[:, None]).sum(axis=0)
    return counts, hits


def pareto_front(settings: Sequence[Setting], conf, gap, novelty, correct, votes=None) -> list[Setting]:
    """Settings no other beats on both routed share and error rate (on these rows), safest first."""
    scored = []
    counts, hits = _routed_counts(settings, conf, gap, novelty, votes, correct)
    for setting, count, hit in zip(settings, counts.tolist(), hits.tolist()):
        if count:
            scored.append((count, 1.0 - hit / count, setting))
    scored.sort(key=lambda row: (-row[0], row[1]))  # most routed first; at equal count, fewest errors
    front, best_error = [], np.inf
    for count, error, setting in scored:
        if error < best_error - 1e-12:
            front.append(setting)
            best_error = error
    return front[::-1]


def first_test_size(n: int, *, target: float, confidence: float) -> int:
    """Routed count of the first test among n testing rows (it depends on counts only, never labels).

    The smallest set that passes while erring at half the allowed rate, but at most a
    third of the rows (and at least the smallest set a perfect record passes). Smaller
    sets are skipped, not tested: at 0.95 a single error fails any set under ~90 rows,
    and a fixed sequence ends at its first failure. Chosen on the dev protocol.
    """
    n_min = min_trials(target, confidence)
    size = n_min
    while clopper_pearson_lower(size - math.ceil(size * (1.0 - target) / 2), size, confidence) < target:
        size += 1
    return min(size, max(n_min, n // 3))


def certify_along(front: Sequence[Setting], conf, gap, novelty, correct, *, target: float, confidence: float, votes=None) -> Setting | None:
    """Fixed-sequence testing along the front; the passed setting that routes the most, or None.

    Tested: the settings routing at least `first_test_size` rows, each routing at
    least 1 % of the rows more than the last one tested (fewer, better-separated
    tests: each is a chance to stop). Both rules look at counts only.
    """
    start = first_test_size(len(conf), target=target, confidence=confidence)
    step = max(1, len(conf) // 100)
    best, best_routed, last_tested = None, -1, -1
    for setting in front:
        routed = setting.routes(conf, gap, novelty, votes)
        count = int(routed.sum())
        if count < start or count < last_tested + step:
            continue
        last_tested = count
        if clopper_pearson_lower(int((routed & correct).sum()), count, confidence) < target:
            break
        if count > best_routed:
            best, best_routed = setting, count
    return best


def select_setting(
    conf: np.ndarray,
    gap: np.ndarray,
    correct: np.ndarray,
    novelty: np.ndarray,
    tuning: np.ndarray,
    *,
    target: float,
    confidence: float,
    margins: Sequence[float],
    votes: np.ndarray | None = None,
    vote_k: int = 10,
    max_novelty: float | None = None,
    max_votes: int | None = None,
) -> tuple[Setting | None, list[Setting], list[Setting]]:
    """Pareto testing on scores: (the chosen setting or None, the grid, the front).

    `correct` must be False for out-of-scope rows; `tuning` marks the rows that
    rank the settings, the others test them. `votes` (out-of-scope neighbours per
    row): the vote test's threshold is chosen too; `max_novelty`, `max_votes`: see `candidate_settings`.
    """
    testing = ~tuning
    settings = candidate_settings(conf, novelty, margins, votes=votes, vote_k=vote_k, max_novelty=max_novelty, max_votes=max_votes)
    part = (lambda mask: None) if votes is None else (lambda mask: votes[mask])
    front = pareto_front(settings, conf[tuning], gap[tuning], novelty[tuning], correct[tuning], part(tuning))
    chosen = certify_along(front, conf[testing], gap[testing], novelty[testing], correct[testing], target=target, confidence=confidence,
                           votes=part(testing))
    return chosen, settings, front


def calibrate_joint(
    logits: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    novelty: np.ndarray,
    *,
    tuning: np.ndarray,
    target_precision: float = 0.95,
    confidence: float = 0.95,
    margins: Sequence[float] = (0.1,),
    votes: np.ndarray | None = None,
    vote_k: int = 10,
    max_novelty: float | None = None,
    max_votes: int | None = None,
) -> CalibrationResult:
    """Pick (novelty threshold, margin, confidence threshold) on a traffic sample.

    `labels`: index into `label_names`, or -1 for an out-of-scope row (never
    right to route). `novelty`: the detector's score per row (higher = more
    novel), or with `votes` its distance test's score; `votes`: out-of-scope
    neighbours per row (for tuning rows that are outlier exposure, both scored
    without themselves), whose threshold is then chosen too. `tuning`: mask of
    the rows that fit the temperature and rank the settings; the others certify.
    `max_novelty`, `max_votes`: the loosest distance and vote thresholds allowed.
    """
    if not 0 < target_precision < 1 or not 0 < confidence < 1:
        raise ValueError("target precision and confidence must be in (0, 1)")
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    novelty = np.asarray(novelty, dtype=np.float64)
    votes = None if votes is None else np.asarray(votes, dtype=np.int64)
    tuning = np.asarray(tuning, dtype=bool)
    if not (len(logits) == len(labels) == len(novelty) == len(tuning)):
        raise ValueError("logits, labels, novelty scores and the tuning mask must have one row per calibrate request")
    n = len(labels)
    in_scope = labels >= 0
    testing = ~tuning
    # A sample too small (or too off-topic) to fit a temperature keeps 1: certification decides anyway.
    fitted = (tuning & in_scope).sum() >= 2
    temperature = fit_temperature(logits[tuning & in_scope], labels[tuning & in_scope]) if fitted else 1.0
    probs = softmax(logits, temperature)
    ece_before = expected_calibration_error(softmax(logits[in_scope], 1.0), labels[in_scope]) if in_scope.any() else 0.0
    ece_after = expected_calibration_error(probs[in_scope], labels[in_scope]) if in_scope.any() else 0.0
    correct = in_scope & (probs.argmax(axis=1) == labels)
    conf, gap = confidence_and_gap(probs)

    margins = sorted(set(float(m) for m in margins)) or [0.0]
    chosen, settings, front = select_setting(conf, gap, correct, novelty, tuning, target=target_precision, confidence=confidence,
                                             margins=margins, votes=votes, vote_k=vote_k, max_novelty=max_novelty, max_votes=max_votes)

    n_test, n_out = int(testing.sum()), int((~in_scope).sum())
    base = dict(
        temperature=temperature,
        target_precision=target_precision,
        confidence=confidence,
        n_calibration=n,
        ece_before=ece_before,
        ece_after=ece_after,
        margins_tried=margins,
        method=METHOD,
        out_of_scope=n_out,
        novelty_thresholds_tried=sorted({s.novelty for s in settings}, reverse=True),
        tuning_rows=int(tuning.sum()),
        settings_tried=len(settings),
        front_size=len(front),
    )
    if chosen is None:
        strictest = Setting(min(s.novelty for s in settings), max(margins), ROUTE_NOTHING, None if votes is None else 0)
        return CalibrationResult(
            margin=max(margins), **ROUTES_NOTHING,
            ood_threshold=strictest.novelty, vote_threshold=strictest.votes, ood_excluded=int(strictest.novel(novelty, votes).sum()),
            message=(
                f"no (novelty, confidence, margin) setting reaches precision {target_precision} with {confidence:.0%} "
                f"confidence on the {n_test} testing rows of {n} calibrate rows ({n_out} out of scope): the bundle routes nothing"
            ),
            **base,
        )
    routed_mask = chosen.routes(conf, gap, novelty, votes) & testing
    stats = routed_statistics(routed_mask[testing], correct[testing], confidence=confidence)
    return CalibrationResult(
        threshold=chosen.threshold,
        margin=chosen.margin,
        label_thresholds={},
        guarantee_met=True,
        **stats,
        ood_threshold=chosen.novelty,
        vote_threshold=chosen.votes,
        ood_excluded=int(chosen.novel(novelty, votes).sum()),
        routed_out_of_scope=int((routed_mask & ~in_scope).sum()),
        message=(
            f"novelty <= {chosen.novelty:.4f}{'' if chosen.votes is None else f' and out-of-scope votes <= {chosen.votes}'}, threshold {chosen.threshold:.4f} (margin {chosen.margin}) route "
            f"{stats['routed']}/{n_test} testing rows of {n} calibrate rows ({n_out} out of scope); precision >= "
            f"{target_precision} with {confidence:.0%} confidence on traffic like this sample, off-topic share included"
        ),
        **base,
    )


def calibrate_on_traffic(
    logits: np.ndarray,
    embeddings: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    detector,
    settings: CalibrationSettings,
    *,
    outlier_embeddings: np.ndarray | None = None,
) -> tuple[CalibrationResult, np.ndarray]:
    """What `train` does with calibrate rows: outlier exposure from the tuning part, then `calibrate_joint`.

    Returns the result and the rows' novelty scores (exemplars scored without
    themselves: what traffic like the sample scores, the monitor's reference).

    `detector`: fitted on the training embeddings; it is given the out-of-scope
    teach rows (`outlier_embeddings`) and the tuning part's out-of-scope rows as
    outlier exposure, and its thresholds are set to the chosen ones.

    A sample with no out-of-scope row has nothing to teach about novelty: it is
    calibrated whole by the single Learn-then-Test (`thresholds.calibrate`), which
    certifies from all its rows, after each novelty test's threshold is set from
    the sample (`detector.fit_threshold`: the distance test at its quantile, and with
    exposure the vote test on a budget of its own). On dev samples of 150 / 300
    / 600 in-scope requests that routed 79 / 63 / 95 % against 24 / 66 / 88 % for
    the split (BENCHMARKS.md).

    With out-of-scope rows, the distance and vote thresholds are chosen jointly with
    the confidence threshold and certified, but neither is looser than its test's own
    threshold from the tuning part's in-scope rows on its false-alarm budget
    (`max_novelty`, `max_votes`, what `fit_threshold` would set there): the
    certified choice may only tighten the tests, and exposure can only add to what
    the distance test flags.
    """
    labels = np.asarray(labels, dtype=np.int64)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if not (labels < 0).any():
        if outlier_embeddings is not None and len(outlier_embeddings):
            detector.fit_outliers(np.asarray(outlier_embeddings, np.float32))
        detector.fit_threshold(embeddings)
        novelty = detector.score(embeddings)
        result = calibrate(logits, labels, label_names, target_precision=settings.target_precision, confidence=settings.confidence,
                           margins=settings.margins, in_distribution=novelty <= detector.threshold_, min_label_support=settings.min_label_support)
        result.ood_threshold = float(detector.threshold_)
        result.vote_threshold = getattr(detector, "vote_threshold", None)
        return result, novelty
    tuning = tuning_mask(len(labels), share=settings.tuning_share, seed=settings.seed)
    exemplars = tuning & (labels < 0)
    teach_outliers = np.zeros((0, embeddings.shape[1]), np.float32) if outlier_embeddings is None else np.asarray(outlier_embeddings, np.float32)
    detector.fit_outliers(np.concatenate([teach_outliers, embeddings[exemplars]]))
    # an exemplar is its own nearest out-of-scope example: score it without itself
    own = np.full(len(labels), -1)
    own[exemplars] = len(teach_outliers) + np.arange(int(exemplars.sum()))
    two_tests = hasattr(detector, "components")
    if two_tests:
        distance, votes = detector.components(embeddings)
        distance[exemplars], votes[exemplars] = detector.components(embeddings[exemplars], own_outlier=own[exemplars])
        in_scope_tuning = tuning & (labels >= 0)
        cap = detector.distance_threshold_for(distance[in_scope_tuning]) if in_scope_tuning.any() else None
        vote_k = detector.vote_k
        max_votes = vote_threshold_for(votes[in_scope_tuning], detector.budgets()[1], vote_k) if in_scope_tuning.any() else None
        if not detector.exposed:
            votes = None
    else:  # a detector without outlier exposure: one score, one threshold
        distance, votes, cap, vote_k, max_votes = detector.score(embeddings), None, None, 0, None
    result = calibrate_joint(logits, labels, label_names, distance, tuning=tuning, votes=votes, vote_k=vote_k, max_votes=max_votes,
                             max_novelty=cap if cap is not None and np.isfinite(cap) else None,
                             target_precision=settings.target_precision, confidence=settings.confidence, margins=settings.margins)
    result.exposure_rows = int(exemplars.sum())
    if two_tests:
        detector.set_thresholds(float(result.ood_threshold), result.vote_threshold)
        novelty = detector.combine(distance, np.zeros(len(distance), np.int64) if votes is None else votes)
    else:
        detector.threshold_ = float(result.ood_threshold)
        novelty = distance
    return result, novelty
