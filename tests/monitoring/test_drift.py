"""The drift monitor: its false-alarm rate on traffic like the calibration sample, and its power."""

import random

import pytest

from sav_router.core.stats import binomial_sf, kolmogorov_sf, ks_statistic
from sav_router.monitoring.drift import check_drift
from sav_router.monitoring.reference import drift_reference

THRESHOLD = 0.6  # novelty threshold of the synthetic model


def decision(rng, *, unseen=False):
    """A decision record of a synthetic model: unseen topics are more novel and less confident."""
    novelty = rng.uniform(0.3, 1.0) if unseen else rng.betavariate(2, 5)
    confidence = rng.uniform(0.3, 0.9) if unseen else rng.betavariate(8, 1.5)
    flagged = novelty > THRESHOLD
    return {"decision": "escalate" if flagged else "route", "confidence": confidence, "ood_score": novelty,
            "reasons": ["out_of_distribution"] if flagged else [], "scores": {}}


def reference(rng, n=1000):
    import numpy as np

    rows = [decision(rng) for _ in range(n)]
    conf = np.array([r["confidence"] for r in rows])
    logits = np.log(np.stack([conf, 1 - conf], axis=1))  # two labels: softmax gives the confidence back
    return drift_reference(logits, [r["ood_score"] for r in rows], THRESHOLD)


def test_the_exact_pieces_match_known_values():
    scipy_stats = pytest.importorskip("scipy.stats")
    assert binomial_sf(7, 50, 0.05) == pytest.approx(scipy_stats.binom.sf(6, 50, 0.05), rel=1e-6)
    a, b = [0.1, 0.4, 0.5, 0.9], [0.2, 0.3, 0.6, 0.7, 0.8]
    assert ks_statistic(a, b) == pytest.approx(scipy_stats.ks_2samp(a, b).statistic)
    d = 0.1
    assert kolmogorov_sf(d, 500, 400) == pytest.approx(scipy_stats.kstwobign.sf(d * (500 * 400 / 900) ** 0.5), abs=0.02)


def test_false_alarm_rate_on_in_distribution_traffic_is_at_most_alpha():
    # GIVEN a calibration reference and many windows of traffic drawn like it
    rng = random.Random(3)
    alarms, checks, alpha = 0, 200, 0.05
    for _ in range(checks):
        ref = reference(rng)
        window = [decision(rng) for _ in range(500)]
        alarms += check_drift(window, ref, alpha=alpha).alarm
    # THEN the monitor fires in at most alpha of the checks (Binomial(200, 0.05) > 19 has probability < 0.3 %)
    assert alarms <= 19, alarms


def test_a_quarter_of_unseen_traffic_fires_the_alarm_and_names_the_remedy():
    rng = random.Random(4)
    ref = reference(rng)
    window = [decision(rng, unseen=rng.random() < 0.25) for _ in range(500)]
    report = check_drift(window, ref)
    assert report.alarm and report.flagged_share > report.reference_share
    assert "annotate a new random sample" in report.remedy and "ALARM" in report.line()


def test_escalations_without_scores_are_not_traffic_evidence():
    rng = random.Random(5)
    ref = reference(rng)
    blanks = [{"decision": "escalate", "confidence": 0.0, "reasons": ["empty_text"], "scores": None}] * 50
    report = check_drift(blanks, ref)
    assert report.n == 0 and not report.alarm and "no traffic" in report.line()
