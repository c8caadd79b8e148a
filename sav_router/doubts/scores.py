"""Out-of-sample class probabilities: a model never trained on the row it scores.

In-sample scores of a fine-tuned model memorise exactly the label errors being sought,
so each row's probabilities come from a cheap classifier (multinomial logistic
regression) fitted on the other folds' rows, on embeddings of a model that never saw
the labels (the frozen base model).
"""

from __future__ import annotations

import numpy as np


def out_of_fold_probabilities(embeddings: np.ndarray, labels: np.ndarray, n_classes: int, *, folds: int = 5, seed: int = 13,
                              strength: float = 1.0) -> np.ndarray:
    """(n, n_classes) probabilities; row i's from a model fitted without row i (stratified k folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    probabilities = np.full((n, n_classes), 1.0 / n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    splits = max(2, min(folds, int(counts[counts > 0].min()) if (counts > 0).any() else 2))
    if n < 2 * splits or len(np.unique(labels)) < 2:
        return probabilities
    # classes with fewer rows than folds are kept whole in training folds (their rows score uniform-ish)
    stratify = np.where(counts[labels] >= splits, labels, -1)
    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    for train, held in splitter.split(embeddings, stratify):
        present = np.unique(labels[train])
        if len(present) < 2:
            continue
        model = LogisticRegression(C=strength, max_iter=300)
        model.fit(embeddings[train], labels[train])
        probabilities[held] = 0.0
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(embeddings[held])
    return probabilities
