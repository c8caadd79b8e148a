"""Fine-tuning safeguards of RouterClassifier, on the tiny random BERT."""

import numpy as np

from sav_router.modeling import bucketed_batches, length_sorted_batches
from sav_router.training import RouterClassifier
from tests.conftest import TOPICS, make_texts


def toy(n, seed):
    texts, labels = [], []
    for label in TOPICS:
        for text in make_texts(label, n, seed=seed):
            texts.append(text)
            labels.append(label)
    return texts, labels


def test_fine_tuning_that_does_worse_than_the_probe_is_not_kept(tiny_base_model):
    texts, labels = toy(40, seed=1)
    val_texts, val_labels = toy(15, seed=2)
    # GIVEN a destructive learning rate
    clf = RouterClassifier(tiny_base_model, epochs=2, learning_rate=5.0, head_learning_rate=5.0, progress=False, patience=5)
    clf.fit(texts, labels, validation=(val_texts, val_labels))
    # THEN the probe's weights are kept, and the model still classifies like the probe did
    assert clf.history_.best_epoch == 0
    assert max(e.validation_accuracy for e in clf.history_.epochs) <= clf.history_.probe_accuracy
    logits, _ = clf.logits_and_embeddings(val_texts)
    accuracy = float(np.mean(np.array(clf.classes_)[logits.argmax(axis=1)] == np.array(val_labels)))
    assert accuracy == clf.history_.probe_accuracy


def test_fit_returns_self_and_learned_state_ends_in_underscore(tiny_base_model):
    texts, labels = toy(20, seed=3)
    clf = RouterClassifier(tiny_base_model, epochs=1, progress=False, learning_rate=1e-3, head_learning_rate=1e-2)
    assert clf.fit(texts, labels) is clf
    assert clf.classes_ == sorted(TOPICS) and clf.history_.epochs[0].train_loss > 0
    assert not hasattr(RouterClassifier(tiny_base_model), "classes_")


def test_batches_group_similar_lengths_and_cover_every_example():
    lengths = [5, 40, 6, 41, 7, 42, 8, 43]
    batches = bucketed_batches(lengths, 2, np.random.default_rng(0), bucket_batches=4)
    assert sorted(i for batch in batches for i in batch) == list(range(8))
    assert all(abs(lengths[a] - lengths[b]) <= 2 for a, b in batches)
    assert [lengths[i] for batch in length_sorted_batches(lengths, 4) for i in batch] == sorted(lengths)
