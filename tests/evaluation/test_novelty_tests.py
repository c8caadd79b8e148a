"""Exposure can only add, on trained bundles (issue 23), and the report's count per novelty test."""

import json
import random

import numpy as np
import pytest

from sav_router.core.labels import OUT_OF_SCOPE
from sav_router.core.policy import OUT_OF_DISTRIBUTION
from sav_router.data.annotations import load_annotations
from sav_router.evaluation.metrics import evaluate
from sav_router.evaluation.report import write_report
from sav_router.model.ood import DISTANCE, NEIGHBOURS
from sav_router.model.router import Router
from tests.conftest import FILLER, TOPICS, make_texts, write_jsonl

OFF_WORDS = ["weather", "recipe", "football", "poem"]


def chit_chat(n, seed, *, near=None):
    """Off-topic texts; `near`: with one word of that annotated topic (chit-chat next to it)."""
    rng = random.Random(seed)
    texts = set()
    while len(texts) < n:
        words = rng.sample(OFF_WORDS, 2) + rng.sample(FILLER, 2) + (rng.sample(TOPICS[near], 1) if near else [])
        rng.shuffle(words)
        texts.add(" ".join(words))
    return sorted(texts)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_base_model):
    """The same teach rows trained twice: without and with 40 out-of-scope answers next to the account topic."""
    from sav_router.training.build import train_bundle
    from sav_router.training.config import TrainConfig

    root = tmp_path_factory.mktemp("exposure")
    rows = [{"text": t, "label": label, "split": "check" if i % 6 == 0 else "teach"}
            for label in TOPICS for i, t in enumerate(make_texts(label, 150, seed=31))]
    exposure = [{"text": t, "label": OUT_OF_SCOPE, "split": "teach"} for t in chit_chat(40, seed=1, near="account")]
    traffic = chit_chat(40, seed=2) + chit_chat(40, seed=3, near="account")
    check = [{"text": t, "label": OUT_OF_SCOPE, "split": "check"} for t in traffic if t not in {r["text"] for r in exposure}]
    config = TrainConfig(base_model=tiny_base_model, epochs=2, seed=13, progress=False, learning_rate=1e-3, head_learning_rate=1e-2, batch_size=16)
    out = {}
    for name, extra in (("without", []), ("with", exposure)):
        data = write_jsonl(root / f"{name}.jsonl", rows + extra + check)
        train_bundle([data], root / name, config=config, log=lambda message: None)
        out[name] = root / name
    return out, [r for r in load_annotations([root / "without.jsonl"]).records if r.split == "check"]


def test_exposure_next_to_a_topic_never_loses_an_off_topic_request_the_distance_test_flags(bundles):
    paths, check = bundles
    without, exposed = Router.load(paths["without"]), Router.load(paths["with"])
    off = [r for r in check if r.label == OUT_OF_SCOPE]
    texts = [r.text for r in off]
    plain, scored = without.score(texts), exposed.score(texts)
    # the same network (exposure rows are no class and never change the split): only the detector differs
    np.testing.assert_allclose(scored.logits, plain.logits, atol=1e-5)
    distance, _ = exposed.ood.components(scored.embeddings)
    np.testing.assert_allclose(distance, plain.ood_scores, atol=1e-5)
    # the distance test's threshold ignores the exposure rows: the no-exposure bundle's, to the bit
    assert exposed.ood.threshold_ == without.ood.threshold_
    flagged_without = np.array([OUT_OF_DISTRIBUTION in d.reasons for d in without.predict(texts)[0]])
    flagged_with = np.array([OUT_OF_DISTRIBUTION in d.reasons for d in exposed.predict(texts)[0]])
    # THEN every off-topic request the no-exposure bundle flags as novel, the exposure bundle flags too
    assert flagged_without.any() and not (flagged_without & ~flagged_with).any()


def test_the_report_counts_what_each_novelty_test_flagged(bundles, tmp_path):
    paths, check = bundles
    router = Router.load(paths["with"])
    evaluation = evaluate(router, check)
    write_report(evaluation, tmp_path, plots=False)
    report = json.loads((tmp_path / "report.json").read_text())
    tests = report["novelty_tests"]
    manifest_params = router.manifest.ood["params"]
    assert DISTANCE in tests and (NEIGHBOURS in tests) == (manifest_params["vote_threshold"] is not None)
    for counts in tests.values():
        assert counts["flagged"] == counts["in_scope"] + counts["out_of_scope"] >= counts["alone"]
    # every flagged request is escalated out_of_distribution, and each of those was flagged by some test
    either = sum(c["alone"] for c in tests.values()) + (
        tests[DISTANCE]["flagged"] - tests[DISTANCE]["alone"] if NEIGHBOURS in tests else 0)
    assert either == report["escalation_reasons"].get(OUT_OF_DISTRIBUTION, 0)
    assert "Novelty tests" in (tmp_path / "report.md").read_text()
    # a bundle without exposure has the distance test only
    plain = evaluate(Router.load(paths["without"]), check).report["novelty_tests"]
    assert set(plain) == {DISTANCE} and plain[DISTANCE]["flagged"] == plain[DISTANCE]["alone"]
