"""Out-of-distribution score: Mahalanobis distance in the model's embedding space.

Live traffic carries topics no annotation ever showed, and a softmax can be
confident on them. The score is the smallest Mahalanobis distance from a
request's pooled embedding to a label's training mean, under one shared
(Ledoit-Wolf shrunk) covariance (Lee et al., 2018). Its threshold is a high
quantile of the scores of held-out in-distribution requests.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf

METHOD = "mahalanobis-tied-ledoit-wolf"


class MahalanobisOOD:
    """Fit on training embeddings and labels; score new embeddings (higher = more novel)."""

    def __init__(self, quantile: float = 0.99) -> None:
        self.quantile = quantile

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> "MahalanobisOOD":
        x = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        classes = np.unique(y)
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        centered = x - means[np.searchsorted(classes, y)]
        covariance, _ = ledoit_wolf(centered, assume_centered=True)
        self.means_ = means.astype(np.float32)
        self.precision_ = np.linalg.pinv(covariance).astype(np.float32)
        self._cache_mean_term()
        return self

    def _cache_mean_term(self) -> None:
        # mu_k^T P mu_k does not depend on the request: computed once, not per call
        self.mean_term_ = np.einsum("ij,ij->i", self.means_ @ self.precision_, self.means_)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)
        projected = x @ self.precision_
        self_term = np.einsum("ij,ij->i", projected, x)
        cross = projected @ self.means_.T
        distances = self_term[:, None] - 2.0 * cross + self.mean_term_[None, :]
        return np.sqrt(np.maximum(distances.min(axis=1), 0.0)).astype(np.float64)

    def fit_threshold(self, in_distribution_embeddings: np.ndarray) -> "MahalanobisOOD":
        """Threshold = `quantile` of held-out in-distribution scores."""
        scores = self.score(in_distribution_embeddings)
        self.threshold_ = float(np.quantile(scores, self.quantile)) if len(scores) else float("inf")
        return self

    def tensors(self) -> dict[str, np.ndarray]:
        return {"means": self.means_, "precision": self.precision_}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], *, threshold: float, quantile: float) -> "MahalanobisOOD":
        detector = cls(quantile=quantile)
        detector.means_ = np.asarray(tensors["means"], dtype=np.float32)
        detector.precision_ = np.asarray(tensors["precision"], dtype=np.float32)
        detector.threshold_ = float(threshold)
        detector._cache_mean_term()
        return detector
