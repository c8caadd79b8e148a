"""Doubts among annotated rows: the records in, the ranked doubts with their evidence out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sav_router.data.annotations import Record
from sav_router.doubts.find import DoubtReport, find_doubts
from sav_router.doubts.scores import out_of_fold_probabilities

Embed = Callable[[Sequence[str]], np.ndarray]


def default_embed(base_model: str | None = None) -> Embed:
    def embed(texts: Sequence[str]) -> np.ndarray:
        from sav_router.model.frozen import frozen_embeddings

        return frozen_embeddings(base_model, texts)

    return embed


def annotation_doubts(records: Sequence[Record], *, embed: Embed, folds: int = 5, seed: int = 13,
                      duplicate_similarity: float = 0.97) -> tuple[DoubtReport, list[dict[str, Any]]]:
    """The report, and one row per doubt (most doubtful first) with the record's id, text, split, file and line."""
    labelled = [r for r in records if r.label is not None]
    label_names = sorted({str(r.label) for r in labelled})
    if len(label_names) < 2:
        raise ValueError("doubts need annotated rows of at least 2 labels")
    index = {label: i for i, label in enumerate(label_names)}
    labels = np.array([index[str(r.label)] for r in labelled])
    embeddings = embed([r.text for r in labelled])
    probabilities = out_of_fold_probabilities(embeddings, labels, len(label_names), folds=folds, seed=seed)
    report = find_doubts(probabilities, labels, label_names, embeddings, splits=[r.split for r in labelled],
                         duplicate_similarity=duplicate_similarity)
    rows = []
    for rank, doubt in enumerate(report.doubts, start=1):
        record = labelled[doubt.index]
        nearest = [{"id": labelled[n["row"]].id, "text": labelled[n["row"]].text[:120], "label": n["label"], "similarity": n["similarity"]}
                   for n in doubt.nearest]
        rows.append({
            "rank": rank, "id": record.id, "text": record.text, "split": record.split, "file": record.source, "line": record.line,
            "label": doubt.given_label, "suspected_label": doubt.suspected_label, "label_score": doubt.given_score,
            "suspected_score": doubt.suspected_score, "margin": doubt.margin, "reasons": doubt.reasons, "nearest": nearest,
        })
    return report, rows
