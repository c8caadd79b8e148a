"""Rank annotated rows by how likely their label is wrong (confident learning, Northcutt et al. 2021).

Given out-of-sample probabilities `p` (`scores.py`) and the given labels `y`:
- each class k gets a threshold t_k: the mean probability of k over the rows labelled k
  (how sure the model is, on average, of a row that really is k);
- a row is a doubt when some other class j reaches its own threshold (p[i, j] >= t_j)
  and is the most probable of the classes that do: the model is confidently of
  another opinion, by each class's own standard;
- doubts are ranked by the normalised margin p[i, y_i] - max_{j != y_i} p[i, j],
  most negative first.
Near-duplicate texts annotated with different labels (cosine >= `duplicate_similarity`)
are doubts too, whatever the scores say: at least one of the two labels is wrong.

The estimated label-error rate of a split is its share of doubts, with an exact
(Clopper-Pearson) interval: the count of rows confident learning flags, the estimator
cleanlab reports as `num_label_issues`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sav_router.core.stats import CONFIDENCE, clopper_pearson

CONFIDENT_LEARNING = "confident_learning"
NEAR_DUPLICATE = "near_duplicate_conflict"
METHOD = "confident learning on out-of-fold probabilities (k-fold logistic regression on frozen base-model embeddings)"


@dataclass
class Doubt:
    index: int  # position in the rows given
    given_label: str
    suspected_label: str
    given_score: float
    suspected_score: float
    margin: float
    reasons: list[str]
    nearest: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoubtReport:
    doubts: list[Doubt]  # ranked, most doubtful first
    rows: int
    by_split: dict[str, dict[str, Any]]
    method: str = METHOD

    def summary(self) -> str:
        parts = [f"{s}: {v['doubts']}/{v['rows']} = {v['rate']:.1%} [{v['interval'][0]:.1%}, {v['interval'][1]:.1%}]"
                 for s, v in self.by_split.items()]
        return f"{len(self.doubts)} doubts in {self.rows} annotated rows; estimated label-error rate " + "; ".join(parts)


def class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n_classes = probabilities.shape[1]
    thresholds = np.ones(n_classes)  # a class nobody is labelled with is never "confidently" it
    for k in range(n_classes):
        rows = labels == k
        if rows.any():
            thresholds[k] = float(probabilities[rows, k].mean())
    return thresholds


def confident_disagreements(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flagged mask, confident label per row or -1)."""
    above = probabilities >= class_thresholds(probabilities, labels)[None, :]
    masked = np.where(above, probabilities, -1.0)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    return (confident >= 0) & (confident != labels), confident


def normalized_margin(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p[y] - max other, the best other class) per row."""
    given = probabilities[np.arange(len(labels)), labels]
    others = probabilities.copy()
    others[np.arange(len(labels)), labels] = -1.0
    best_other = others.argmax(axis=1)
    return given - others[np.arange(len(labels)), best_other], best_other


def near_duplicate_conflicts(embeddings: np.ndarray, labels: np.ndarray, threshold: float, *, block: int = 1024) -> dict[int, int]:
    """Row -> the most similar row with another label, for pairs at cosine >= threshold (blockwise: memory O(block x n))."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    partner: dict[int, int] = {}
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T
        rows = np.arange(start, min(start + block, len(unit)))
        sims[rows - start, rows] = -1.0  # not itself
        sims[labels[rows][:, None] == labels[None, :]] = -1.0  # only pairs with different labels
        best = sims.argmax(axis=1)
        for offset, row in enumerate(rows):
            if sims[offset, best[offset]] >= threshold:
                partner[int(row)] = int(best[offset])
    return partner


def nearest_rows(embeddings: np.ndarray, row: int, k: int) -> list[tuple[int, float]]:
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit[row]
    sims[row] = -np.inf
    order = np.argsort(-sims)[:k]
    return [(int(i), float(sims[i])) for i in order]


def find_doubts(
    probabilities: np.ndarray,
    labels: Sequence[int],
    label_names: Sequence[str],
    embeddings: np.ndarray,
    *,
    splits: Sequence[str],
    duplicate_similarity: float = 0.97,
    neighbours: int = 3,
    confidence: float = CONFIDENCE,
) -> DoubtReport:
    """Doubts among annotated rows (`probabilities` out of sample, `labels` indices into `label_names`)."""
    labels = np.asarray(labels, dtype=np.int64)
    flagged, confident = confident_disagreements(probabilities, labels)
    margin, best_other = normalized_margin(probabilities, labels)
    partners = near_duplicate_conflicts(embeddings, labels, duplicate_similarity)
    doubts = []
    for i in np.flatnonzero(flagged | np.isin(np.arange(len(labels)), list(partners))):
        reasons = ([CONFIDENT_LEARNING] if flagged[i] else []) + ([NEAR_DUPLICATE] if int(i) in partners else [])
        suspected = int(confident[i]) if flagged[i] else int(labels[partners[int(i)]])
        nearest = [{"row": j, "label": label_names[labels[j]], "similarity": round(sim, 4)} for j, sim in nearest_rows(embeddings, int(i), neighbours)]
        doubts.append(Doubt(
            index=int(i), given_label=label_names[labels[i]], suspected_label=label_names[suspected],
            given_score=round(float(probabilities[i, labels[i]]), 4), suspected_score=round(float(probabilities[i, suspected]), 4),
            margin=round(float(margin[i]), 4), reasons=reasons, nearest=nearest,
        ))
    doubts.sort(key=lambda d: (d.margin, d.index))
    by_split: dict[str, dict[str, Any]] = {}
    doubted = {d.index for d in doubts}
    for split in dict.fromkeys(splits):
        rows = [i for i, s in enumerate(splits) if s == split]
        count = sum(1 for i in rows if i in doubted)
        low, high = clopper_pearson(count, len(rows), confidence)
        by_split[split] = {"rows": len(rows), "doubts": count, "rate": count / len(rows), "interval": [round(low, 4), round(high, 4)],
                           "confidence": confidence}
    return DoubtReport(doubts=doubts, rows=len(labels), by_split=by_split)
