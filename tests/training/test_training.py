"""Fine-tuning safeguards of RouterClassifier, on the tiny random BERT."""

import numpy as np
import pytest

from sav_router.model.network import bucketed_batches, length_sorted_batches
from sav_router.training.estimator import RouterClassifier
from tests.conftest import TOPICS, make_texts


def toy(n, seed):
    texts, labels = [], []
    for label in TOPICS:
        for text in make_texts(label, n, seed=seed):
            texts.append(text)
            labels.append(label)
    return texts, labels


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_fine_tuning_that_does_worse_than_its_starting_head_is_not_kept(tiny_base_model, head):
    texts, labels = toy(40, seed=1)
    val_texts, val_labels = toy(15, seed=2)
    # GIVEN a destructive learning rate (epoch 0: the linear probe, or the class centroids)
    clf = RouterClassifier(tiny_base_model, head=head, epochs=2, learning_rate=5.0, head_learning_rate=5.0, progress=False, patience=5)
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


def test_cosine_head_folds_into_an_equivalent_linear_head():
    import torch

    from sav_router.model.network import CosineHead

    torch.manual_seed(0)
    head = CosineHead(8, 3, scale=20.0)
    pooled = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    folded = head.folded()
    # GIVEN any inputs, the folded plain linear head gives the same logits
    assert type(folded) is torch.nn.Linear
    assert torch.allclose(head(pooled), folded(pooled), atol=1e-5)
    # AND the logits are scaled cosines, bounded by the scale
    assert head(pooled).abs().max() <= 20.0 + 1e-4


def test_cosine_head_training_learns_and_saves_a_plain_linear_head(tiny_base_model):
    import torch

    texts, labels = toy(40, seed=4)
    val_texts, val_labels = toy(10, seed=5)
    # GIVEN the cosine head, started from the class centroids
    clf = RouterClassifier(tiny_base_model, head="cosine", epochs=3, learning_rate=1e-3, head_learning_rate=1e-2, progress=False, patience=5)
    clf.fit(texts, labels, validation=(val_texts, val_labels))
    # THEN after fitting the network holds an ordinary linear head (what bundles store and ONNX exports)
    assert type(clf.network_.head) is torch.nn.Linear
    # AND it classifies the held-out toy texts better than chance, as validation recorded
    logits, _ = clf.logits_and_embeddings(val_texts)
    accuracy = float(np.mean(np.array(clf.classes_)[logits.argmax(axis=1)] == np.array(val_labels)))
    assert accuracy > 0.5
    kept = clf.history_.probe_accuracy if clf.history_.best_epoch == 0 else clf.history_.epochs[clf.history_.best_epoch - 1].validation_accuracy
    assert accuracy == kept


def test_layer_decay_slows_lower_layers_and_skips_decay_on_norms(tiny_base_model):
    from sav_router.model.network import load_encoder
    from sav_router.training.estimator import encoder_parameter_groups

    _, encoder = load_encoder(tiny_base_model)
    groups = encoder_parameter_groups(encoder, 1e-4, 0.01, layer_decay=0.5)
    # every parameter is in exactly one group
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in encoder.parameters())
    rate = {}
    for name, parameter in encoder.named_parameters():
        group = next(g for g in groups if any(p is parameter for p in g["params"]))
        rate[name] = group["lr"]
        if name.endswith("bias") or "LayerNorm" in name:
            assert group["weight_decay"] == 0.0
    # 2 blocks: top block at the full rate, the one below at half, the embeddings at a quarter
    assert rate["encoder.layer.1.attention.self.query.weight"] == 1e-4
    assert rate["encoder.layer.0.attention.self.query.weight"] == 5e-5
    assert rate["embeddings.word_embeddings.weight"] == 2.5e-5


def test_an_unknown_head_is_refused(tiny_base_model):
    texts, labels = toy(5, seed=6)
    with pytest.raises(ValueError, match="head must be one of"):
        RouterClassifier(tiny_base_model, head="mlp", progress=False).fit(texts, labels)


@pytest.mark.parametrize(
    ("accuracies", "best_epoch"),
    [
        ([0.5, 0.5, 0.8, 0.8, 0.6], 3),  # epoch 3 ties epoch 2: the later one is kept
        ([0.5, 0.5, 0.4], 0),  # epoch 1 only ties the starting head: the start is kept
    ],
)
def test_validation_ties_keep_the_later_epoch_but_never_replace_the_start(tiny_base_model, monkeypatch, accuracies, best_epoch):
    import sav_router.training.estimator as training

    texts, labels = toy(10, seed=7)
    val_texts, val_labels = toy(5, seed=8)
    real_forward = training.forward_texts
    # GIVEN validation accuracies scripted per evaluation: the starting head first, then each epoch
    script = iter(accuracies)

    def scripted(network, tokenizer, batch_texts, **kwargs):
        logits, pooled = real_forward(network, tokenizer, batch_texts, **kwargs)
        if list(batch_texts) != val_texts:
            return logits, pooled
        index = {label: i for i, label in enumerate(sorted(set(labels)))}
        gold = np.array([index[label] for label in val_labels])
        right = np.zeros(len(gold), dtype=bool)
        right[: round(next(script) * len(gold))] = True
        predicted = np.where(right, gold, (gold + 1) % len(index))
        return np.eye(len(index), dtype=np.float32)[predicted] * 10, pooled

    monkeypatch.setattr(training, "forward_texts", scripted)
    epochs = len(accuracies) - 1
    clf = RouterClassifier(tiny_base_model, epochs=epochs, patience=5, progress=False, learning_rate=1e-4, head_learning_rate=1e-3)
    clf.fit(texts, labels, validation=(val_texts, val_labels))
    assert [e.validation_accuracy for e in clf.history_.epochs] == accuracies[1:]
    assert clf.history_.best_epoch == best_epoch


def test_inference_batches_cut_a_mixed_micro_batch_by_length():
    # GIVEN a micro-batch of ten short requests and two long ones, in arrival order
    lengths = [60, 5, 6, 5, 7, 6, 5, 58, 6, 5, 7, 6]
    batches = length_sorted_batches(lengths, 64)
    # THEN the long ones are not padding the short ones: each batch stays within 25 % padding
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        real = sum(lengths[i] for i in batch)
        assert len(batch) * max(lengths[i] for i in batch) <= 1.25 * real
    assert {0, 7} in [set(batch) for batch in batches]
    # AND with unlimited padding it is one batch, as before
    assert len(length_sorted_batches(lengths, 64, max_padding=float("inf"))) == 1
