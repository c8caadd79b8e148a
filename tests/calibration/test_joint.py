"""Joint Learn-then-Test: the promise on traffic with an off-topic share, tested on synthetic scores."""

import numpy as np
import pytest

from sav_router.calibration.settings import CalibrationSettings
from sav_router.calibration.joint import calibrate_joint, calibrate_on_traffic, first_test_size, select_setting, tuning_mask
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
        # WHEN novelty and confidence thresholds are chosen jointly (half tunes, half tests)
        tuning = tuning_mask(len(conf), share=0.5, seed=int(rng.integers(1 << 30)))
        chosen, _, _ = select_setting(conf, np.ones_like(conf), correct, novelty, tuning, target=target, confidence=confidence, margins=(0.0,))
        if chosen is None:
            routed_nothing += 1
            continue
        failures += true_precision(chosen.novelty, chosen.threshold) < target
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
    # WHEN calibrated jointly (a seeded 40 % tunes, the rest certifies)
    tuning = tuning_mask(n_in + n_out, share=0.4, seed=0)
    result = calibrate_joint(logits, labels, ["a", "b", "c"], novelty, tuning=tuning, target_precision=0.95, margins=(0.0,))
    # THEN the novelty threshold sits at the edge of the out-of-scope rows, and the few routed
    # ones are the routed set's errors (every in-scope row is right here), within the promise
    assert result.guarantee_met and result.lower_bound >= 0.95
    assert result.routed - result.correct == result.routed_out_of_scope <= 0.05 * result.routed
    assert result.ood_threshold < 0.7 and result.out_of_scope == n_out
    assert result.routed >= 0.6 * n_in * 0.6 and result.tuning_rows == 320
    assert result.n_calibration == n_in + n_out and result.front_size > 0
    # AND when off-topic rows look like in-scope ones to the detector, routing them is an error:
    # at a quarter of the traffic no setting reaches 0.95, so nothing is routed
    same = calibrate_joint(logits, labels, ["a", "b", "c"], rng.uniform(0, 1, n_in + n_out), tuning=tuning, target_precision=0.95, margins=(0.0,))
    assert not same.guarantee_met and same.threshold == ROUTE_NOTHING


def test_a_sample_too_small_or_all_off_topic_routes_nothing_and_says_why():
    for labels in (-np.ones(5, dtype=int), np.array([0, 1, -1, 0, 1])):
        result = calibrate_joint(np.zeros((5, 2)), labels, ["a", "b"], np.zeros(5), tuning=np.arange(5) < 3)
        assert not result.guarantee_met and result.threshold == ROUTE_NOTHING and "routes nothing" in result.message
    with pytest.raises(ValueError, match="one row per calibrate request"):
        calibrate_joint(np.zeros((5, 2)), np.zeros(4, dtype=int), ["a", "b"], np.zeros(5), tuning=np.arange(5) < 3)
    with pytest.raises(ValueError, match="tuning share"):
        tuning_mask(10, share=1.0, seed=0)


def test_the_first_test_waits_for_a_set_that_can_pass_with_errors_but_never_for_more_than_a_third():
    # at 0.95 / 95 %: a perfect record passes from 59 rows, a record erring at 2.5 % from 234
    assert first_test_size(10_000, target=0.95, confidence=0.95) == 234
    assert first_test_size(300, target=0.95, confidence=0.95) == 100
    assert first_test_size(90, target=0.95, confidence=0.95) == 59


def test_the_certified_setting_is_tested_on_rows_that_chose_nothing():
    """The front is ranked on tuning rows only: corrupting the testing rows' labels changes
    the verdict, corrupting the tuning rows' labels can only change the order."""
    rng = np.random.default_rng(3)
    conf, correct, novelty, _ = synthetic_traffic(rng, 2000)
    tuning = tuning_mask(2000, share=0.4, seed=1)
    chosen, _, front = select_setting(conf, np.ones_like(conf), correct, novelty, tuning, target=0.8, confidence=0.9, margins=(0.0,))
    assert chosen is not None and chosen in front
    # every testing row wrong: nothing can be certified, whatever the tuning rows say
    broken = correct & tuning
    assert select_setting(conf, np.ones_like(conf), broken, novelty, tuning, target=0.8, confidence=0.9, margins=(0.0,))[0] is None


def clusters(rng, centres, n, spread=0.08):
    points = np.concatenate([c + rng.normal(0, spread, size=(n, len(c))) for c in centres])
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_calibrating_on_traffic_turns_the_tuning_part_out_of_scope_rows_into_exposure_and_keeps_them_out():
    from sav_router.model.ood import NearestNeighbourOOD

    # GIVEN two annotated topics, and traffic where a quarter is an unannotated topic next to topic a,
    # confidently classified as a, with a few training requests among it (as fine-tuning leaves them)
    rng = np.random.default_rng(8)
    a, b, c = np.eye(4)[0], np.eye(4)[1], np.eye(4)[2]
    off = (a + 0.5 * c) / np.linalg.norm(a + 0.5 * c)
    bank = np.concatenate([clusters(rng, [a, b], 300), clusters(rng, [off], 15)])
    def traffic(n_in, n_off):
        x = np.concatenate([clusters(rng, [a, b], n_in), clusters(rng, [off], n_off)])
        return x, np.stack([x @ a, x @ b], axis=1) * 12
    embeddings, logits = traffic(450, 300)
    labels = np.concatenate([np.zeros(450, int), np.ones(450, int), -np.ones(300, int)])
    # WHEN the sample calibrates jointly, 40 % tuning
    detector = NearestNeighbourOOD(k=1).fit(bank)
    result, novelty = calibrate_on_traffic(logits, embeddings, labels, ["a", "b"], detector,
                                           CalibrationSettings(tuning_share=0.4, seed=5, target_precision=0.95, confidence=0.95, margins=(0.0,)))
    tuning = tuning_mask(len(labels), share=0.4, seed=5)
    # THEN the tuning part's out-of-scope rows are the detector's exposure, scored without themselves
    exemplars = np.where(tuning & (labels < 0))[0]
    assert result.exposure_rows == len(exemplars) == detector.outliers_.shape[0]
    assert np.allclose(novelty[exemplars], detector.score(embeddings[exemplars], own_outlier=np.arange(len(exemplars))))
    with_themselves = detector.score(embeddings[exemplars])  # left in, each would vote for itself
    assert (novelty[exemplars] <= with_themselves).all() and (novelty[exemplars] < with_themselves).any()
    # AND on fresh traffic the policy keeps the off-topic topic out and routes annotated requests
    assert result.guarantee_met and detector.threshold_ == result.ood_threshold
    fresh, fresh_logits = traffic(200, 200)
    probs = np.exp(fresh_logits / result.temperature)
    probs /= probs.sum(axis=1, keepdims=True)
    routed = (detector.score(fresh) <= result.ood_threshold) & (probs.max(axis=1) >= result.threshold)
    assert routed[400:].mean() < 0.05 and routed[:400].mean() > 0.5


def test_a_sample_with_nothing_off_topic_certifies_whole_by_the_single_learn_then_test():
    from sav_router.calibration.thresholds import METHOD as SINGLE
    from sav_router.model.ood import NearestNeighbourOOD

    # GIVEN a calibrate sample of 400 in-scope requests, none answered out of scope
    rng = np.random.default_rng(4)
    a, b = np.eye(3)[0], np.eye(3)[1]
    embeddings = clusters(rng, [a, b], 200)
    labels = np.repeat([0, 1], 200)
    logits = np.stack([embeddings @ a, embeddings @ b], axis=1) * 12
    detector = NearestNeighbourOOD(k=1, quantile=0.99).fit(clusters(rng, [a, b], 100))
    # WHEN it calibrates
    result, novelty = calibrate_on_traffic(logits, embeddings, labels, ["a", "b"], detector,
                                           CalibrationSettings(tuning_share=0.4, seed=1, target_precision=0.95, confidence=0.95, margins=(0.1,)))
    # THEN nothing is split off to tune: every row certifies, the novelty threshold is the detector's quantile
    assert result.method == SINGLE and result.tuning_rows == 0 and result.exposure_rows == 0
    assert result.guarantee_met and result.routed > 300
    assert result.ood_threshold == detector.threshold_ == pytest.approx(np.quantile(novelty, 0.99))
