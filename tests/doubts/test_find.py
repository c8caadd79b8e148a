"""Confident learning finds flipped labels from out-of-sample scores (synthetic clusters)."""

from __future__ import annotations

import numpy as np

from sav_router.doubts.find import CONFIDENT_LEARNING, NEAR_DUPLICATE, find_doubts
from sav_router.doubts.scores import out_of_fold_probabilities


def clusters(n_per_class=60, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 16)) * 3  # within a cluster, cosine stays below the near-duplicate bound
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), 16)), labels


def test_flipped_labels_rank_first_and_the_rate_estimate_covers_the_truth():
    # GIVEN well separated clusters with 5 % of labels flipped to another class
    embeddings, truth = clusters()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(truth), size=12, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + 1) % 4
    # WHEN scored out of fold and ranked
    probabilities = out_of_fold_probabilities(embeddings, given, 4, folds=5)
    report = find_doubts(probabilities, given, ["a", "b", "c", "d"], embeddings, splits=["teach"] * len(given))
    # THEN the flipped rows are the doubts (a model trained on them would have memorised them)
    found = {d.index for d in report.doubts}
    # (a random pick of 12 rows would hold 0.6 of them on average)
    assert len(found & set(flipped.tolist())) >= 9 and len(found - set(flipped.tolist())) <= 2
    assert all(d.suspected_label == "abcd"[truth[d.index]] for d in report.doubts if d.index in set(flipped.tolist()))
    low, high = report.by_split["teach"]["interval"]
    assert low <= 12 / len(given) <= high
    assert all(CONFIDENT_LEARNING in d.reasons and len(d.nearest) == 3 for d in report.doubts)


def test_in_sample_scores_would_hide_them():
    # the reason for out-of-fold scores: a model that memorises its training rows (as fine-tuning does) agrees with them
    from sklearn.neighbors import KNeighborsClassifier

    embeddings, truth = clusters(seed=3)
    given = truth.copy()
    given[:5] = (truth[:5] + 1) % 4
    in_sample = KNeighborsClassifier(n_neighbors=1).fit(embeddings, given).predict_proba(embeddings)
    out_of_fold = out_of_fold_probabilities(embeddings, given, 4)
    names = ["a", "b", "c", "d"]
    caught = lambda p: {d.index for d in find_doubts(p, given, names, embeddings, splits=["teach"] * len(given), duplicate_similarity=1.01).doubts} & set(range(5))
    assert len(caught(out_of_fold)) > len(caught(in_sample))


def test_near_duplicates_with_different_labels_are_doubts_whatever_the_scores():
    embeddings, labels = clusters(n_per_class=20, classes=2)
    embeddings[5] = embeddings[30] + 1e-4  # the same text, in effect, annotated twice with different labels
    probabilities = np.eye(2)[labels] * 0.98 + 0.01  # scores that agree with every given label
    report = find_doubts(probabilities, labels, ["a", "b"], embeddings, splits=["teach"] * 20 + ["check"] * 20)
    assert {d.index for d in report.doubts} == {5, 30} and all(d.reasons == [NEAR_DUPLICATE] for d in report.doubts)
    assert report.by_split["check"]["doubts"] == 1
