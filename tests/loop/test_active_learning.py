"""Selection for annotation: uncertainty, novelty, disagreement, diversity."""

import numpy as np

from sav_router.loop.active_learning import disagreement, margin_uncertainty, percentile_rank, select_for_annotation


def test_margin_uncertainty_prefers_close_calls():
    probs = np.array([[0.98, 0.01, 0.01], [0.5, 0.45, 0.05], [0.7, 0.2, 0.1]])
    assert list(np.argsort(-margin_uncertainty(probs))) == [1, 2, 0]


def test_percentile_rank_is_scale_free():
    assert list(percentile_rank(np.array([10.0, 1000.0, 0.1]))) == [0.5, 1.0, 0.0]


def test_disagreement_counts_flips_most():
    prod = np.array([[0.9, 0.1], [0.6, 0.4]])
    cand = np.array([[0.1, 0.9], [0.55, 0.45]])
    values = disagreement(prod, cand)
    assert values[0] > 1.5 and 0 < values[1] < 0.1


def test_selection_skips_near_duplicates_and_surfaces_novel_requests():
    rng = np.random.default_rng(0)
    n = 50
    embeddings = rng.normal(size=(n, 8))
    embeddings[1:6] = embeddings[0] + rng.normal(scale=1e-3, size=(5, 8))  # six rewordings of one request
    probs = np.tile([0.9, 0.1], (n, 1))
    probs[:6] = [0.51, 0.49]  # ...that are all uncertain
    ood = np.zeros(n)
    ood[40] = 50.0  # one novel topic, confidently classified
    selection = select_for_annotation(probs, embeddings, 3, ood_scores=ood)
    chosen = selection.indices
    assert len(chosen) == 3 and len(set(chosen)) == 3
    assert sum(i < 6 for i in chosen) == 1  # one representative of the duplicates, not six
    assert 40 in chosen


def test_selection_fills_with_duplicates_when_the_pool_is_not_diverse():
    embeddings = np.ones((4, 3))
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]])
    assert select_for_annotation(probs, embeddings, 3).indices == [0, 1, 2]
