"""Group escalated novel requests into candidate new intents.

Requests escalated as `out_of_distribution` (from the review queue or the
traffic log) are embedded by the model, then grouped by average-linkage
agglomerative clustering on cosine distance, cut at a distance threshold (the
number of topics is not known in advance). Each candidate intent has a size,
representative examples (the members nearest its centroid) and the existing
labels it is nearest to (the model's mean probability over its members), so a
reviewer can tell a new topic from a known one the model is unsure about.

A reviewer accepts a cluster as a new label (`sav-router discover --accept`):
its members become `teach` annotations with that label, or out-of-scope ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sav_router.core.policy import OUT_OF_DISTRIBUTION


@dataclass
class Candidate:
    """A request that may belong to a new topic."""

    id: str
    text: str


@dataclass
class Cluster:
    cluster: str
    size: int
    cohesion: float  # mean cosine similarity of members to the centroid
    examples: list[str]  # representative texts, nearest the centroid first
    nearest_labels: list[dict[str, float]]  # [{"label", "score"}], the model's mean probability
    members: list[dict[str, str]] = field(default_factory=list)  # [{"id", "text"}]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidate(row: Mapping[str, Any]) -> Candidate | None:
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    raw_id = row.get("id")
    rid = str(raw_id) if raw_id not in (None, "") else "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return Candidate(rid, text.strip())


def novel_from_queue(items: Iterable[Mapping[str, Any]]) -> list[Candidate]:
    """Review-queue entries escalated as out of distribution (audit samples are not)."""
    out = []
    for item in items:
        if item.get("audit") is True or OUT_OF_DISTRIBUTION not in (item.get("reasons") or ()):
            continue
        candidate = _candidate(item)
        if candidate is not None:
            out.append(candidate)
    return _unique(out)


def novel_from_traffic(rows: Iterable[Mapping[str, Any]]) -> list[Candidate]:
    """Logged requests the production model escalated as out of distribution."""
    out = []
    for row in rows:
        decision = row.get("production") or {}
        if isinstance(decision, Mapping) and OUT_OF_DISTRIBUTION in (decision.get("reasons") or ()):
            candidate = _candidate(row)
            if candidate is not None:
                out.append(candidate)
    return _unique(out)


def _unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    from sav_router.data.annotations import normalize_text

    seen: set[str] = set()
    out = []
    for c in candidates:
        key = normalize_text(c.text)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def cluster_embeddings(embeddings: np.ndarray, *, distance: float = 0.35) -> np.ndarray:
    """Cluster ids (0..k-1) by average-linkage on cosine distance, cut at `distance`."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average")
    return model.fit_predict(np.asarray(embeddings, dtype=np.float64))


def build_clusters(
    candidates: Sequence[Candidate],
    embeddings: np.ndarray,
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    distance: float = 0.35,
    min_size: int = 3,
    examples: int = 5,
    nearest: int = 3,
) -> list[Cluster]:
    """Candidate intents, largest first; groups under `min_size` are left out."""
    unit = np.asarray(embeddings, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    assignment = cluster_embeddings(unit, distance=distance)
    groups = [np.where(assignment == c)[0] for c in np.unique(assignment)]
    groups = sorted((g for g in groups if len(g) >= min_size), key=lambda g: (-len(g), int(g[0])))
    out = []
    for number, members in enumerate(groups, start=1):
        centroid = unit[members].mean(axis=0)
        centroid /= max(np.linalg.norm(centroid), 1e-12)
        similarity = unit[members] @ centroid
        order = members[np.argsort(-similarity, kind="stable")]
        mean_probs = probabilities[members].mean(axis=0)
        top = np.argsort(-mean_probs, kind="stable")[:nearest]
        out.append(
            Cluster(
                cluster=f"c{number}",
                size=int(len(members)),
                cohesion=round(float(similarity.mean()), 4),
                examples=[candidates[i].text for i in order[:examples]],
                nearest_labels=[{"label": labels[i], "score": round(float(mean_probs[i]), 4)} for i in top],
                members=[{"id": candidates[i].id, "text": candidates[i].text} for i in order],
            )
        )
    return out


def accepted_rows(cluster: Mapping[str, Any], label: str, *, reviewer: str | None, when: str) -> list[dict[str, Any]]:
    """A cluster accepted as `label`: one teach annotation per member."""
    return [
        {"id": m["id"], "text": m["text"], "label": label, "split": "teach", "source": "discover",
         "cluster": cluster["cluster"], "reviewer": reviewer, "reviewed_at": when}
        for m in cluster.get("members", [])
    ]
