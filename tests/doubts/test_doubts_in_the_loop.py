"""The loop uses the doubts: the bundle records its calibrate rows' label-error estimate; the gate can bound it."""

from __future__ import annotations

import numpy as np

from sav_router.core.bundle import read_manifest
from sav_router.doubts.estimate import label_error_estimate, unreliable_promise
from sav_router.loop.comparison import Gate, label_noise_verdict


def test_train_records_the_calibrate_rows_label_error_estimate(tiny_bundle):
    estimate = read_manifest(tiny_bundle).calibration["label_doubts"]
    assert estimate["rows"] > 0 and 0 <= estimate["rate"] <= 1 and estimate["interval"][0] <= estimate["rate"] <= estimate["interval"][1]


def test_the_estimate_counts_wrong_labels_of_a_sample_scored_out_of_sample():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 100)
    probabilities = np.full((300, 3), 0.02)
    probabilities[np.arange(300), truth] = 0.96
    given = truth.copy()
    given[:15] = (truth[:15] + 1) % 3  # 5 % of the labels wrong
    estimate = label_error_estimate(probabilities, given, ["a", "b", "c"], rng.normal(size=(300, 8)))
    assert estimate["doubts"] == 15 and estimate["rate"] == 0.05
    assert unreliable_promise(estimate, 0.95) and not unreliable_promise(estimate | {"rate": 0.01}, 0.95)


def test_the_gate_bounds_label_noise_only_when_asked():
    passed = {"passed": True, "reason": "fine"}
    noisy = {"rate": 0.08, "rows": 100, "doubts": 8, "interval": [0.03, 0.15]}
    assert label_noise_verdict(passed, noisy, Gate()) == passed
    failed = label_noise_verdict(passed, noisy, Gate(max_label_error_rate=0.05))
    assert not failed["passed"] and "0.080 above 0.05" in failed["reason"]
    assert not label_noise_verdict(passed, None, Gate(max_label_error_rate=0.05))["passed"]
    assert label_noise_verdict(passed, noisy | {"rate": 0.02}, Gate(max_label_error_rate=0.05))["passed"]
