"""A loaded bundle that turns request texts into decisions.

`Router` joins the three parts of a bundle: the network (through a backend),
the temperature and OOD detector (calibrated scores), and the routing policy
(the pure-Python `decide`). Batch prediction, evaluation and the server all go
through `Router.predict`, so there is one code path from text to decision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sav_router.calibration.temperature import softmax
from sav_router.core.bundle import OOD_FILE, Manifest, check_bundle_files, read_manifest
from sav_router.core.policy import (
    EMPTY_TEXT,
    Decision,
    RoutingPolicy,
    decide,
    decision_record,
    escalation,
)
from sav_router.model.backends import DEFAULT_BACKEND, InferenceBackend, certified_backend, load_backend, resolve_backend, uncovered_message

if TYPE_CHECKING:
    from sav_router.model.ood import OODDetector

log = logging.getLogger("sav_router.model")


class Request(Protocol):
    """Anything with an id and a text (a `Record`, a parsed request)."""

    id: str | None
    text: str


@dataclass
class Scored:
    """Calibrated probabilities and OOD scores for a batch (rows follow the input)."""

    probabilities: np.ndarray
    ood_scores: np.ndarray | None
    logits: np.ndarray
    embeddings: np.ndarray | None = None  # pooled encoder output (active learning, diversity)


@dataclass
class Prediction:
    """What `Router.run` returns: `scored` has one row per index of `scored_rows` (non-blank texts)."""

    decisions: list[Decision]
    scores: list[dict[str, float] | None]
    scored: Scored
    scored_rows: list[int]


def load_ood(bundle_dir: str | Path, manifest: Manifest) -> "OODDetector | None":
    if not manifest.ood:
        return None
    from safetensors.numpy import load_file

    from sav_router.core.bundle import BundleError
    from sav_router.model.ood import MahalanobisOOD, detector_from_tensors

    tensors = load_file(str(Path(bundle_dir) / manifest.ood.get("file", OOD_FILE)))
    try:
        return detector_from_tensors(
            manifest.ood.get("method", MahalanobisOOD.METHOD),
            tensors,
            threshold=float(manifest.ood["threshold"]),
            quantile=float(manifest.ood.get("quantile", 0.99)),
            params=manifest.ood.get("params"),
        )
    except (KeyError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: cannot load the OOD detector: {exc}") from exc


def verify_certified_file(bundle_dir: str | Path, manifest: Manifest) -> None:
    """The certified ONNX file is the one the promise was computed on (its SHA-256), or a BundleError."""
    from sav_router.core.bundle import BundleError

    record = manifest.serving.get("certification") or {}
    if not record.get("file") or not record.get("sha256"):
        return
    from sav_router.model.backends import file_sha256

    path = Path(bundle_dir) / record["file"]
    if not path.is_file() or file_sha256(path) != record["sha256"]:
        raise BundleError(f"{path}: missing or changed since the bundle was certified on it (SHA-256 differs from router.json): "
                          "its promise does not cover this file; restore the bundle or recalibrate it")


class Router:
    def __init__(self, manifest: Manifest, backend: InferenceBackend, ood: "OODDetector | None", policy: RoutingPolicy | None = None) -> None:
        self.manifest = manifest
        self.backend = backend
        self.ood = ood
        self.policy = policy or manifest.policy

    @property
    def certified(self) -> bool:
        """Whether the bundle's thresholds and promise were computed on this backend's scores."""
        return getattr(self.backend, "name", None) == certified_backend(self.manifest)

    @classmethod
    def load(cls, bundle_dir: str | Path, *, backend: str = DEFAULT_BACKEND, policy: RoutingPolicy | None = None, num_threads: int | None = None) -> "Router":
        """The bundle with its certified backend by default; another one loads with a warning that the promise does not cover it."""
        manifest = read_manifest(bundle_dir)
        check_bundle_files(bundle_dir, manifest)  # a BundleError naming the file, before any loader runs
        name = resolve_backend(backend, manifest)
        if name == certified_backend(manifest):
            verify_certified_file(bundle_dir, manifest)
        else:
            log.warning("%s: %s", bundle_dir, uncovered_message(name, manifest))
        return cls(manifest, load_backend(name, bundle_dir, manifest, num_threads=num_threads), load_ood(bundle_dir, manifest), policy)

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @property
    def version(self) -> str:
        return self.manifest.model_version

    def score(self, texts: Sequence[str]) -> Scored:
        logits, pooled = self.backend.forward(list(texts))
        probabilities = softmax(logits, self.manifest.temperature)
        ood_scores = self.ood.score(pooled) if self.ood is not None and len(texts) else None
        return Scored(probabilities=probabilities, ood_scores=ood_scores, logits=logits, embeddings=pooled)

    def decide_scored(self, scored: Scored, row: int) -> Decision:
        scores = dict(zip(self.labels, scored.probabilities[row].tolist()))
        ood = None if scored.ood_scores is None else float(scored.ood_scores[row])
        return decide(scores, self.policy, ood_score=ood, model_version=self.version)

    def run(self, texts: Sequence[str]) -> Prediction:
        """Decisions, label scores and the calibrated scores behind them; blank texts escalate without scoring."""
        present = [i for i, text in enumerate(texts) if text and text.strip()]
        scored = self.score([texts[i] for i in present])
        decisions: list[Decision] = [escalation(EMPTY_TEXT, model_version=self.version)] * len(texts)
        all_scores: list[dict[str, float] | None] = [None] * len(texts)
        for row, i in enumerate(present):
            decisions[i] = self.decide_scored(scored, row)
            all_scores[i] = dict(zip(self.labels, (round(p, 6) for p in scored.probabilities[row].tolist())))
        return Prediction(decisions=decisions, scores=all_scores, scored=scored, scored_rows=present)

    def predict(self, texts: Sequence[str]) -> tuple[list[Decision], list[dict[str, float] | None]]:
        """Decisions and full label scores per text (the one path from text to decision)."""
        prediction = self.run(texts)
        return prediction.decisions, prediction.scores

    def decision_records(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        """One decision record per request (the format of `predict`, the traffic log and the review queue)."""
        decisions, scores = self.predict([r.text for r in requests])
        return [decision_record(r.id, d, s) for r, d, s in zip(requests, decisions, scores)]
