"""Temperature scaling and the precision guarantee of the threshold."""

import math

import numpy as np
import pytest

from sav_router.calibration.temperature import expected_calibration_error, fit_temperature, softmax
from sav_router.core.stats import clopper_pearson_lower
from sav_router.calibration.thresholds import (
    ROUTE_NOTHING,
    calibrate,
    fixed_sequence_threshold,
    min_trials,
)


def test_clopper_pearson_matches_closed_form_for_perfect_record():
    # k = n: the lower bound solves p^n = alpha
    assert clopper_pearson_lower(59, 59, 0.95) == pytest.approx(0.05 ** (1 / 59), rel=1e-9)
    assert clopper_pearson_lower(0, 10, 0.95) == 0.0
    assert min_trials(0.95, 0.95) == 59


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 3, size=(4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    fitted = fit_temperature(true_logits * 2.5, labels)  # overconfident by 2.5x
    assert fitted == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(softmax(true_logits * 2.5), labels)
    after = expected_calibration_error(softmax(true_logits * 2.5, fitted), labels)
    assert after < before / 2


def synthetic_calibration(rng, n):
    """Confidence s ~ U(0.5, 1), correct with probability s: a calibrated model with known truth."""
    scores = rng.uniform(0.5, 1.0, size=n)
    correct = rng.uniform(size=n) < scores
    return scores, correct


def true_precision(threshold: float) -> float:
    # E[s | s >= t] for s ~ U(0.5, 1)
    return (1 + max(threshold, 0.5)) / 2


def test_chosen_threshold_meets_the_target_in_the_stated_share_of_repetitions():
    rng = np.random.default_rng(42)
    target, confidence, repetitions = 0.9, 0.9, 400
    failures = routed_nothing = 0
    for _ in range(repetitions):
        scores, correct = synthetic_calibration(rng, 600)
        result = fixed_sequence_threshold(scores, correct, target=target, confidence=confidence)
        if result is None:
            routed_nothing += 1
        elif true_precision(result.threshold) < target:
            failures += 1
    # Guarantee: P(true precision < target) <= 1 - confidence = 10%.
    # Binomial(400, 0.1) exceeds 55 with probability < 0.3%: a wrong procedure would fail this.
    assert failures <= 55, failures
    assert routed_nothing < repetitions / 2  # and it is not vacuous


def test_fixed_sequence_is_stricter_than_the_raw_empirical_choice_and_keeps_the_promise():
    """Why the bound matters: the loosest threshold whose empirical precision reaches the target
    breaks the promise about half the time; the project's threshold on the same draws is never
    looser than it, and breaks it far less often."""
    rng = np.random.default_rng(7)
    target, failures_raw, failures_ours, stricter = 0.9, 0, 0, 0
    for _ in range(200):
        scores, correct = synthetic_calibration(rng, 600)
        order = np.argsort(-scores)
        precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
        raw = scores[order][np.where(precision >= target)[0].max()]
        ours = fixed_sequence_threshold(scores, correct, target=target, confidence=0.9)
        chosen = ours.threshold if ours is not None else ROUTE_NOTHING
        assert chosen >= raw
        stricter += chosen > raw
        failures_raw += true_precision(raw) < target
        failures_ours += ours is not None and true_precision(ours.threshold) < target
        if ours is not None:
            assert ours.lower_bound == pytest.approx(clopper_pearson_lower(ours.correct, ours.routed, 0.9))
    assert failures_raw > 40
    assert failures_ours <= 30  # at most 10 % expected; Binomial(200, 0.1) > 30 has probability < 1 %
    assert stricter > 150


def test_no_threshold_meeting_the_target_routes_nothing():
    logits = np.zeros((100, 3))
    logits[:, 0] = 1.0
    labels = np.arange(100) % 3  # 1/3 correct at every confidence
    result = calibrate(logits, labels, ["a", "b", "c"], target_precision=0.95)
    assert result.threshold == ROUTE_NOTHING and not result.guarantee_met
    assert "routes nothing" in result.message


def test_calibrate_on_a_good_model_routes_most_with_the_bound_above_target():
    rng = np.random.default_rng(3)
    n, k = 2000, 4
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(0, 1, size=(n, k))
    logits[np.arange(n), labels] += rng.uniform(0, 8, size=n)  # mostly right, sometimes unsure
    result = calibrate(logits, labels, list("abcd"), target_precision=0.95, confidence=0.95, margins=(0.0, 0.1),
                       min_label_support=10**9)  # one global threshold: its bound is the whole story
    assert result.guarantee_met and result.coverage > 0.5
    assert not result.label_thresholds
    assert result.lower_bound >= 0.95
    assert result.empirical_precision >= 0.95
    assert result.margin in (0.0, 0.1)


def test_per_label_threshold_tightens_a_weak_label():
    rng = np.random.default_rng(5)
    n, k = 5000, 10
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(0, 0.5, size=(n, k))
    logits[np.arange(n), labels] = rng.uniform(3, 10, size=n)
    # 3% of the other labels' requests are confidently predicted as label 9
    confused = (labels != 9) & (rng.uniform(size=n) < 0.03)
    logits[confused, 9] = logits[confused].max(axis=1) + rng.uniform(0.5, 3, size=confused.sum())
    names = [f"l{i}" for i in range(9)] + ["weak"]
    result = calibrate(logits, labels, names, target_precision=0.95, margins=(0.0,), min_label_support=100)
    assert result.guarantee_met
    assert "weak" in result.label_thresholds and result.label_thresholds["weak"] > result.threshold
    assert set(result.label_thresholds) == {"weak"}


def test_ood_excluded_calibration_rows_do_not_count_as_routed():
    logits = np.tile([5.0, 0.0], (300, 1))
    labels = np.zeros(300, dtype=int)
    mask = np.ones(300, dtype=bool)
    mask[:30] = False
    result = calibrate(logits, labels, ["a", "b"], in_distribution=mask, margins=(0.0,))
    assert result.routed == 270 and result.ood_excluded == 30
    assert math.isclose(result.coverage, 0.9)
