"""Exposure can only add (issue 23): the distance test and the out-of-scope neighbour test, each with its own threshold."""

import numpy as np
import pytest

from sav_router.model.ood import (
    COMBINED,
    DISTANCE,
    NEIGHBOURS,
    NearestNeighbourOOD,
    detector_from_tensors,
    fired_tests,
)


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def world(seed: int, dims: int = 12):
    """Annotated topics along axes 0..3; a few of topic 0's requests look like chit-chat ("hello, anyone
    there?" next to a contact intent), and the exposure (110 chit-chat answers) sits next to them.
    Off-topic traffic: far from everything (axis 6), chit-chat like the exposure, and between topic 1 and axis 7."""
    rng = np.random.default_rng(seed)
    eye = np.eye(dims)
    chit_chat = unit(eye[0] + 0.8 * eye[5])

    def around(centre, n, spread):
        return unit(centre + spread * rng.standard_normal((n, dims)))

    topics = [around(eye[t], 250, 0.12) for t in range(4)]
    topics[0] = np.concatenate([topics[0], around(unit(eye[0] + 0.5 * eye[5]), 25, 0.12)])
    topics = [t[rng.permutation(len(t))] for t in topics]
    cut = [int(0.8 * len(t)) for t in topics]
    train = np.concatenate([t[:c] for t, c in zip(topics, cut)])
    held_out = np.concatenate([t[c:] for t, c in zip(topics, cut)])
    exposure = around(chit_chat, 110, 0.15)
    off_topic = np.concatenate([around(eye[6], 100, 0.6), around(chit_chat, 100, 0.15), around(eye[7] + eye[1], 100, 0.5)])
    return train, held_out, exposure, off_topic


def test_the_previous_single_quantile_switches_the_distance_test_off_and_the_two_tests_do_not():
    train, held_out, exposure, off_topic = world(0)
    plain = NearestNeighbourOOD(quantile=0.99).fit(train).fit_threshold(held_out)
    # the previous formula: distance + votes, one threshold at the quantile of held-out scores
    previous = NearestNeighbourOOD(quantile=0.99).fit(train).fit_outliers(exposure)
    previous_threshold = np.quantile(previous.score(held_out), 0.99)
    assert previous_threshold > 1.0  # above any plausible distance: only a request with a vote can be flagged
    # the two tests: the distance threshold comes from held-out distances alone, the same as without exposure
    exposed = NearestNeighbourOOD(quantile=0.99).fit(train).fit_outliers(exposure).fit_threshold(held_out)
    distance, votes = exposed.components(held_out)
    assert exposed.threshold_ == plain.threshold_ == float(np.quantile(distance, 0.99))
    assert exposed.vote_threshold is not None and (votes > exposed.vote_threshold).mean() <= 0.01 * exposed.vote_budget
    # AND the false alarms on held-out in-scope rows stay within both budgets (up to a quantile's rounding)
    assert (exposed.score(held_out) > exposed.threshold_).mean() <= 0.01 * (1 + exposed.vote_budget) + 1 / len(held_out)
    # AND off-topic requests far from everything are still flagged, unlike under the previous formula
    far = off_topic[:100]
    assert (exposed.score(far) > exposed.threshold_).mean() > 0.9
    assert (previous.score(far) > previous_threshold).mean() < (exposed.score(far) > exposed.threshold_).mean()


@pytest.mark.parametrize("seed", range(8))
def test_exposure_only_adds_to_what_the_distance_test_flags(seed):
    """Property: with exposure next to one annotated topic, every off-topic request the no-exposure detector
    flags is flagged (the distance test keeps its budget; the vote test has its own)."""
    train, held_out, exposure, off_topic = world(seed)
    without = NearestNeighbourOOD(quantile=0.99).fit(train).fit_threshold(held_out)
    with_exposure = NearestNeighbourOOD(quantile=0.99).fit(train).fit_outliers(exposure).fit_threshold(held_out)
    flagged_with = with_exposure.score(off_topic) > with_exposure.threshold_
    flagged_without = without.score(off_topic) > without.threshold_
    assert not (flagged_without & ~flagged_with).any()
    # and on this world exposure adds: the chit-chat-like requests next to topic 0 are caught by their neighbours
    assert flagged_with[100:200].mean() > flagged_without[100:200].mean()
    tests = with_exposure.novelty_tests(off_topic)
    assert set(tests) == {DISTANCE, NEIGHBOURS} and np.array_equal(tests[DISTANCE] | tests[NEIGHBOURS], flagged_with)


def test_the_one_score_is_either_test_and_decodes_back_to_the_tests_that_fired():
    train, held_out, exposure, off_topic = world(3)
    detector = NearestNeighbourOOD(quantile=0.99).fit(train).fit_outliers(exposure).fit_threshold(held_out)
    rows = np.concatenate([held_out, off_topic])
    distance, votes = detector.components(rows)
    score = detector.score(rows)
    either = (distance > detector.threshold_) | (votes > detector.vote_threshold)
    assert np.array_equal(score > detector.threshold_, either)
    # below the vote threshold the score is the distance itself
    quiet = votes <= detector.vote_threshold
    np.testing.assert_allclose(score[quiet], distance[quiet])
    # a logged score and the bundle's params give the tests back (what a dashboard counts)
    params, flags = detector.params(), detector.novelty_tests(rows)
    for i in range(len(rows)):
        fired = fired_tests(float(score[i]), params, detector.threshold_)
        assert fired == [name for name in (DISTANCE, NEIGHBOURS) if flags[name][i]]
    # a tightened threshold (an operator override) only adds to what each test flags
    tighter = detector.novelty_tests(rows, threshold=detector.threshold_ * 0.8)
    assert all((tighter[name] | ~flags[name]).all() for name in flags)


def test_without_exposure_the_detector_is_exactly_the_distance_at_the_full_budget():
    train, held_out, _, off_topic = world(1)
    detector = NearestNeighbourOOD(quantile=0.99).fit(train).fit_threshold(held_out)
    assert detector.threshold_ == float(np.quantile(detector.components(held_out)[0], 0.99))
    np.testing.assert_array_equal(detector.score(off_topic), detector.components(off_topic)[0])
    assert detector.vote_threshold is None and set(detector.novelty_tests(off_topic)) == {DISTANCE}


def test_the_bundle_format_is_versioned_previous_bundles_score_as_before_unknown_formulas_are_refused():
    train, held_out, exposure, off_topic = world(2)
    # a bundle of the previous formula: params {k, vote_k}, one threshold on distance + votes
    previous = NearestNeighbourOOD(quantile=0.99).fit(train).fit_outliers(exposure)
    old_threshold = float(np.quantile(previous.score(held_out), 0.99))
    loaded = detector_from_tensors(previous.METHOD, previous.tensors(), threshold=old_threshold, quantile=0.99, params={"k": 1, "vote_k": 10})
    distance, votes = previous.components(off_topic)
    np.testing.assert_allclose(loaded.score(off_topic), distance + votes, atol=1e-6)
    assert loaded.threshold_ == old_threshold and set(loaded.novelty_tests(off_topic)) == {COMBINED}
    assert "formula" not in loaded.params()
    # a two-test bundle round-trips exactly
    fitted = NearestNeighbourOOD(quantile=0.99).fit(train).fit_outliers(exposure).fit_threshold(held_out)
    again = detector_from_tensors(fitted.METHOD, fitted.tensors(), threshold=fitted.threshold_, quantile=0.99, params=fitted.params())
    assert again.params() == fitted.params() and again.threshold_ == fitted.threshold_
    np.testing.assert_allclose(again.score(off_topic), fitted.score(off_topic), atol=1e-6)
    # a formula this version does not know is refused, not guessed
    with pytest.raises(ValueError, match="upgrade sav-router"):
        detector_from_tensors(fitted.METHOD, fitted.tensors(), threshold=0.3, quantile=0.99, params=fitted.params() | {"formula": "learned-v9"})
