"""Out-of-distribution scores in the model's embedding space (higher = more novel).

Live traffic carries topics no annotation ever showed, and a softmax can be
confident on them. Two detectors, both fitted on the training embeddings,
both with a threshold at a high quantile of held-out in-distribution scores:

- `mahalanobis`: the smallest Mahalanobis distance from a request's pooled
  embedding to a label's training mean, under one shared (Ledoit-Wolf
  shrunk) covariance (Lee et al., 2018). Small to store (means + precision).
- `knn` (the default, k=1): one minus the cosine similarity to the k-th
  nearest training embedding (Sun et al., 2022). No assumption that a label
  is one Gaussian blob; stores the training embeddings (float16). On
  Banking77 intents held out of training it separates unseen from seen
  requests far better (AUROC 0.94 against 0.83-0.86 for Mahalanobis;
  `benchmarks/open_set_dev.py`, BENCHMARKS.md).

A bundle records its detector's method; loading refuses a method it does not
know rather than guessing.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class OODDetector:
    """What the router needs of a detector: `score`, `threshold_`, and a way back from disk."""

    METHOD: ClassVar[str]

    def __init__(self, quantile: float = 0.99) -> None:
        self.quantile = quantile

    def score(self, embeddings: np.ndarray, *, own_outlier: np.ndarray | None = None) -> np.ndarray:  # pragma: no cover - interface
        """Novelty per row. `own_outlier`: per row, the index of its own outlier-exposure
        example to leave out (-1: none), so that an example is not scored by itself."""
        raise NotImplementedError

    def fit_outliers(self, embeddings: np.ndarray) -> "OODDetector":
        """Outlier exposure: requests annotated out of scope in the teach data.

        The base detector ignores them; detectors that can use them override this.
        """
        return self

    def fit_threshold(self, in_distribution_embeddings: np.ndarray):
        """Threshold = `quantile` of held-out in-distribution scores."""
        scores = self.score(in_distribution_embeddings)
        self.threshold_ = float(np.quantile(scores, self.quantile)) if len(scores) else float("inf")
        return self

    def params(self) -> dict[str, object]:
        """Constructor arguments besides the quantile, recorded in the manifest."""
        return {}


class MahalanobisOOD(OODDetector):
    """Fit on training embeddings and labels; score new embeddings."""

    METHOD = "mahalanobis-tied-ledoit-wolf"

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> "MahalanobisOOD":
        from sklearn.covariance import ledoit_wolf  # lazily: only fitting needs scikit-learn

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

    def score(self, embeddings: np.ndarray, *, own_outlier: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)  # no outlier exposure: own_outlier changes nothing
        projected = x @ self.precision_
        self_term = np.einsum("ij,ij->i", projected, x)
        cross = projected @ self.means_.T
        distances = self_term[:, None] - 2.0 * cross + self.mean_term_[None, :]
        return np.sqrt(np.maximum(distances.min(axis=1), 0.0)).astype(np.float64)

    def tensors(self) -> dict[str, np.ndarray]:
        return {"means": self.means_, "precision": self.precision_}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], *, threshold: float, quantile: float, **_params) -> "MahalanobisOOD":
        detector = cls(quantile=quantile)
        detector.means_ = np.asarray(tensors["means"], dtype=np.float32)
        detector.precision_ = np.asarray(tensors["precision"], dtype=np.float32)
        detector.threshold_ = float(threshold)
        detector._cache_mean_term()
        return detector


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class NearestNeighbourOOD(OODDetector):
    """Cosine distance to the k-th nearest training embedding; with outlier
    exposure, plus how many of the request's `vote_k` nearest annotated requests
    were answered out of scope.

    Why a vote and not a distance to the nearest out-of-scope example: fine-tuning
    pulls requests on unannotated topics next to the annotated topic they resemble,
    so an off-topic request is rarely much closer to one off-topic example than to
    every training request, but its neighbourhood is full of them. On the Banking77
    dev protocol (half of a traffic sample's out-of-scope rows as exposure) the
    vote separates unseen intents at AUROC 0.965-0.982 against 0.941-0.949 for the
    nearest-example difference and 0.922-0.926 without exposure
    (`benchmarks/traffic_calibration_dev.py`, BENCHMARKS.md).
    """

    METHOD = "knn-cosine"
    VOTE_K = 10

    def __init__(self, quantile: float = 0.99, k: int = 1, vote_k: int = VOTE_K) -> None:
        super().__init__(quantile)
        self.k = k
        self.vote_k = vote_k

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None) -> "NearestNeighbourOOD":
        if self.k < 1 or self.vote_k < 1:
            raise ValueError("k and vote_k must be at least 1")
        # float16 halves the bundle; cosine similarities move by < 1e-3
        self.bank_ = _unit_rows(embeddings).astype(np.float16)
        self._bank32 = self.bank_.astype(np.float32)
        return self

    def fit_outliers(self, embeddings: np.ndarray) -> "NearestNeighbourOOD":
        """Keep out-of-scope examples: they vote in `score` (an empty set keeps none)."""
        if len(embeddings):
            self.outliers_ = _unit_rows(embeddings).astype(np.float16)
            self._outliers32 = self.outliers_.astype(np.float32)
        else:
            self.outliers_ = self._outliers32 = None
        return self

    def score(self, embeddings: np.ndarray, *, own_outlier: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
        """1 - cosine similarity to the k-th nearest training request; with outlier
        exposure, plus the number of out-of-scope examples among the `vote_k`
        nearest of training requests and out-of-scope examples together (0 without
        exposure, so the score is then exactly the distance)."""
        x = _unit_rows(embeddings)
        own = None if own_outlier is None else np.asarray(own_outlier, dtype=np.int64)
        k = min(self.k, len(self._bank32))
        outliers = getattr(self, "_outliers32", None)
        out = np.empty(len(x), dtype=np.float64)
        for start in range(0, len(x), chunk):
            similarity = x[start : start + chunk] @ self._bank32.T
            kth = np.partition(similarity, -k, axis=1)[:, -k]
            out[start : start + chunk] = 1.0 - kth
            if outliers is not None:
                to_outliers = x[start : start + chunk] @ outliers.T
                if own is not None:  # an example does not vote for itself
                    rows = np.where(own[start : start + chunk] >= 0)[0]
                    to_outliers[rows, own[start : start + chunk][rows]] = -np.inf
                both = np.concatenate([similarity, to_outliers], axis=1)
                votes = min(self.vote_k, both.shape[1])
                nearest = np.argpartition(-both, votes - 1, axis=1)[:, :votes]
                out[start : start + chunk] += (nearest >= similarity.shape[1]).sum(axis=1)
        return out

    def params(self) -> dict[str, object]:
        return {"k": self.k, "vote_k": self.vote_k}

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {"bank": self.bank_}
        if getattr(self, "outliers_", None) is not None:
            tensors["outliers"] = self.outliers_
        return tensors

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, np.ndarray], *, threshold: float, quantile: float, k: int = 1, vote_k: int | None = None, **_params
    ) -> "NearestNeighbourOOD":
        if "outliers" in tensors and vote_k is None:
            # bundles of the first outlier-exposure formula (distance to the nearest example) would score differently now
            raise ValueError("this bundle's outlier exposure predates the neighbour vote (no vote_k recorded): retrain it")
        detector = cls(quantile=quantile, k=int(k), vote_k=int(vote_k or cls.VOTE_K))
        detector.bank_ = np.asarray(tensors["bank"], dtype=np.float16)
        detector._bank32 = detector.bank_.astype(np.float32)
        if "outliers" in tensors:
            detector.fit_outliers(np.asarray(tensors["outliers"], dtype=np.float32))
        detector.threshold_ = float(threshold)
        return detector


# CLI / config names -> detector classes; manifests record the class's METHOD
DETECTORS: dict[str, type[OODDetector]] = {"mahalanobis": MahalanobisOOD, "knn": NearestNeighbourOOD}
BY_METHOD: dict[str, type[OODDetector]] = {cls.METHOD: cls for cls in DETECTORS.values()}


def make_detector(name: str, *, quantile: float, k: int = 1) -> OODDetector:
    if name not in DETECTORS:
        raise ValueError(f"unknown OOD detector {name!r} (available: {', '.join(DETECTORS)})")
    detector = DETECTORS[name]
    return detector(quantile=quantile, k=k) if detector is NearestNeighbourOOD else detector(quantile=quantile)


def detector_from_tensors(method: str, tensors: dict[str, np.ndarray], *, threshold: float, quantile: float, params: dict | None = None) -> OODDetector:
    """Rebuild a bundle's detector; an unknown method is refused, not guessed."""
    if method not in BY_METHOD:
        raise ValueError(f"unknown OOD method {method!r} in the bundle (this version knows: {', '.join(BY_METHOD)})")
    return BY_METHOD[method].from_tensors(tensors, threshold=threshold, quantile=quantile, **(params or {}))
