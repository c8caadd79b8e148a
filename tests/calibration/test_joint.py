"""Joint Learn-then-Test: the promise on traffic with an off-topic share, tested on synthetic scores."""

import numpy as np
import pytest

from sav_router.calibration.joint import calibrate_joint, select_joint
from sav_router.calibration.thresholds import ROUTE_NOTHING, fixed_sequence_threshold

OFF_TOPIC = 0.25  # share of traffic nobody annotated


def synthetic_traffic(rng, n):
    """In scope: confidence s ~ U(0.5, 1), right with probability s, novelty ~ U(0, 1).
    Out of scope: just as confident, never right, novelty ~ U(0.8, 1.8)."""
    off = rng.uniform(size=n) < OFF_TOPIC
    conf = rng.uniform(0.5, 1.0, size=n)
    correct = ~off & (rng.uniform(size=n) < conf)
    novelty = np.where(off, rng.uniform(0.8, 1.8, size=n), rng.uniform(0.0, 1.0, size=n))
    return conf, correct, novelty, off


def true_precision(novelty_threshold: float, threshold: float) -> float:
    """Routed precision on the traffic distribution above, in closed form."""
    t = max(threshold, 0.5)
    f_in = min(max(novelty_threshold, 0.0), 1.0)
    f_out = min(max(novelty_threshold - 0.8, 0.0), 1.0)
    if f_in == 0 and f_out == 0:
        return 1.0
    return (1 - OFF_TOPIC) * f_in * (1 + t) / (2 * ((1 - OFF_TOPIC) * f_in + OFF_TOPIC * f_out))


def test_joint_choice_keeps_the_promise_with_off_topic_traffic_in_the_stated_share_of_draws():
    # GIVEN many calibration samples of traffic with a quarter off topic
    rng = np.random.default_rng(11)
    target, confidence, repetitions = 0.8, 0.9, 150
    failures = routed_nothing = 0
    for _ in range(repetitions):
        conf, correct, novelty, _ = synthetic_traffic(rng, 1500)
        # WHEN novelty and confidence thresholds are chosen jointly
        best, _, _ = select_joint(conf, np.ones_like(conf), correct, novelty, target=target, confidence=confidence, margins=(0.0,))
        if best is None:
            routed_nothing += 1
            continue
        novelty_threshold, _, result = best
        failures += true_precision(novelty_threshold, result.threshold) < target
    # THEN the true routed precision, off-topic share included, misses the target in at most
    # 1 - confidence = 10 % of the draws (Binomial(150, 0.1) > 26 has probability < 0.5 %)
    assert failures <= 26, failures
    assert routed_nothing < repetitions / 10  # and the promise is not vacuous


def test_calibrating_on_in_scope_rows_only_breaks_the_promise_on_traffic():
    """Why the joint choice matters: a threshold certified on annotated topics alone, applied
    to traffic where off-topic requests are just as confident, misses the target nearly always."""
    rng = np.random.default_rng(12)
    misses = 0
    for _ in range(50):
        conf, correct, _, off = synthetic_traffic(rng, 800)
        result = fixed_sequence_threshold(conf[~off], correct[~off], target=0.8, confidence=0.9)
        # a novelty threshold at the 0.99 quantile of in-scope scores lets a fifth of the off-topic traffic through
        misses += result is not None and true_precision(0.99, result.threshold) < 0.8
    assert misses >= 35


def test_routed_out_of_scope_rows_count_as_errors_and_the_novelty_threshold_is_chosen():
    # GIVEN logits of a confident model: 600 right in-scope rows, 200 out-of-scope rows that are
    # confidently "label 0" but more novel than every in-scope row
    rng = np.random.default_rng(5)
    n_in, n_out = 600, 200
    labels = np.concatenate([rng.integers(0, 3, size=n_in), -np.ones(n_out, dtype=int)])
    logits = rng.normal(0, 0.3, size=(n_in + n_out, 3))
    logits[np.arange(n_in), labels[:n_in]] += 6.0
    logits[n_in:, 0] += 6.0
    novelty = np.concatenate([rng.uniform(0, 0.5, n_in), rng.uniform(0.6, 1.0, n_out)])
    # WHEN calibrated jointly
    result = calibrate_joint(logits, labels, ["a", "b", "c"], novelty, target_precision=0.95, margins=(0.0,))
    # THEN the novelty threshold sits below every out-of-scope row: none of them is routed
    assert result.guarantee_met and result.routed_out_of_scope == 0
    assert result.ood_threshold < 0.6 and result.out_of_scope == n_out
    assert result.routed >= 0.6 * n_in
    # AND when off-topic rows look like in-scope ones to the detector, routing them is an error:
    # at a quarter of the traffic no setting reaches 0.95, so nothing is routed
    same = calibrate_joint(logits, labels, ["a", "b", "c"], rng.uniform(0, 1, n_in + n_out), target_precision=0.95, margins=(0.0,))
    assert not same.guarantee_met and same.threshold == ROUTE_NOTHING


def test_joint_calibration_needs_in_scope_rows():
    with pytest.raises(ValueError):
        calibrate_joint(np.zeros((5, 2)), -np.ones(5, dtype=int), ["a", "b"], np.zeros(5))
