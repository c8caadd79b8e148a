"""Choosing which unlabeled requests to annotate next.

Priority mixes three signals, each turned into a percentile rank so their
scales do not matter: uncertainty (1 - (top-1 minus top-2), the margin),
novelty (the bundle's out-of-distribution score: distance to the training
data in the model's embedding space, so new topics surface), and, when a
candidate model is given, disagreement with production (different top label,
plus the total-variation distance of their score vectors). Diversity: a
greedy pass in priority order skips a request too similar (cosine) to one
already chosen, so a batch is not N rewordings of the same request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_WEIGHTS = {"uncertainty": 1.0, "novelty": 0.5, "disagreement": 1.0}


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1]; ties share their average rank (so a constant signal is neutral)."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=np.float64)
    if len(values) <= 1:
        return np.zeros(len(values))
    return (rankdata(values, method="average") - 1) / (len(values) - 1)


def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def disagreement(production: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """1 when top labels differ, plus half the L1 distance of the score vectors (in [0, 2])."""
    flip = (production.argmax(axis=1) != candidate.argmax(axis=1)).astype(np.float64)
    return flip + 0.5 * np.abs(production - candidate).sum(axis=1)


@dataclass
class Selection:
    indices: list[int]
    priority: np.ndarray
    signals: dict[str, np.ndarray] = field(default_factory=dict)


def select_for_annotation(
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    k: int,
    *,
    ood_scores: np.ndarray | None = None,
    candidate_probabilities: np.ndarray | None = None,
    weights: dict[str, float] | None = None,
    max_similarity: float = 0.92,
) -> Selection:
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    signals = {"uncertainty": margin_uncertainty(probabilities)}
    if ood_scores is not None:
        signals["novelty"] = np.asarray(ood_scores, dtype=np.float64)
    if candidate_probabilities is not None:
        signals["disagreement"] = disagreement(probabilities, candidate_probabilities)
    total = sum(weights[name] for name in signals)
    priority = sum(weights[name] * percentile_rank(values) for name, values in signals.items()) / max(total, 1e-12)

    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    order = np.argsort(-priority, kind="stable")
    chosen: list[int] = []
    skipped: list[int] = []
    for index in order:
        if len(chosen) == k:
            break
        if chosen and float((unit[chosen] @ unit[index]).max()) > max_similarity:
            skipped.append(int(index))
            continue
        chosen.append(int(index))
    # Not enough diverse requests: fill with the best of the near-duplicates.
    chosen += skipped[: max(0, k - len(chosen))]
    return Selection(indices=chosen, priority=priority, signals=signals)


def calibration_sample(pool_size: int, n: int, *, exclude: Sequence[int] = (), seed: int = 13) -> list[int]:
    """`n` pool indices drawn uniformly at random (none of `exclude`), to annotate as `calibrate` rows.

    The precision guarantee holds for data like the calibration split; requests
    picked for being uncertain or novel are harder than traffic, so the
    calibration rows of an active-learning loop must be a plain random sample.
    """
    excluded = set(exclude)
    candidates = [i for i in range(pool_size) if i not in excluded]
    if n <= 0 or not candidates:
        return []
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist())


def select_batch(
    router, rows: list[dict], k: int, *, calibration_share: float = 0.0, candidate=None, max_similarity: float = 0.92, seed: int = 13
) -> tuple[list[dict], list[dict]]:
    """The ranked batch (uncertain, novel, disputed; diverse) and its random calibration part.

    The one implementation behind `sav-router select` and the console's "start a batch".
    """
    if not 0 <= calibration_share < 1:
        raise ValueError("--calibration-share must be in [0, 1)")
    if not rows:
        raise ValueError("no request to select from")
    scored = router.score([row["text"] for row in rows])
    candidate_probabilities = None
    if candidate is not None:
        if candidate.labels != router.labels:
            raise ValueError("--candidate must have the same labels as --model to measure disagreement")
        candidate_probabilities = candidate.score([row["text"] for row in rows]).probabilities
    n_random = round(k * calibration_share)
    selection = select_for_annotation(
        scored.probabilities,
        scored.embeddings,
        k - n_random,
        ood_scores=scored.ood_scores,
        candidate_probabilities=candidate_probabilities,
        max_similarity=max_similarity,
    )
    picked = [_selected_row(rows[i], scored.probabilities[i], router.labels, selection, i) for i in selection.indices]
    randoms: list[dict] = []
    if n_random:
        sample = calibration_sample(len(rows), n_random, exclude=selection.indices, seed=seed)
        randoms = [_selected_row(rows[i], scored.probabilities[i], router.labels, None, i) for i in sample]
    return picked, randoms


def _selected_row(row: dict, probs, labels: list[str], selection, index: int) -> dict:
    top = probs.argsort()[::-1][:3]
    picked = {"id": row["id"], "text": row["text"], "label": labels[top[0]], "score": round(float(probs[top[0]]), 4)}
    if selection is not None:
        picked["priority"] = round(float(selection.priority[index]), 4)
        picked["signals"] = {name: round(float(values[index]), 4) for name, values in selection.signals.items()}
    picked["top_k"] = [{"label": labels[j], "score": round(float(probs[j]), 4)} for j in top]
    return picked
