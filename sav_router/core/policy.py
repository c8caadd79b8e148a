"""The route/escalate decision.

Pure Python on purpose: the routing Lambda imports this module, so it must not
pull in torch, transformers or numpy. Scores come in as calibrated
probabilities (label -> probability), from the local model, the SageMaker
endpoint's answer, or a logged decision being re-scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

ROUTE = "route"
ESCALATE = "escalate"

# Escalation reasons (stable strings: queues, dashboards and reports key on them).
LOW_CONFIDENCE = "low_confidence"
AMBIGUOUS = "ambiguous"
OUT_OF_DISTRIBUTION = "out_of_distribution"
NO_TEAM_FOR_LABEL = "no_team_for_label"
EMPTY_TEXT = "empty_text"
MODEL_UNAVAILABLE = "model_unavailable"
ROUTING_DISABLED = "routing_disabled"
REASONS = (
    LOW_CONFIDENCE,
    AMBIGUOUS,
    OUT_OF_DISTRIBUTION,
    NO_TEAM_FOR_LABEL,
    EMPTY_TEXT,
    MODEL_UNAVAILABLE,
    ROUTING_DISABLED,
)


def _check_probability(name: str, value: float, *, upper: float = 1.0) -> float:
    value = float(value)
    if math.isnan(value) or value < 0.0 or value > upper:
        raise ValueError(f"{name} must be within [0, {upper}], got {value!r}")
    return value


@dataclass(frozen=True)
class RoutingPolicy:
    """Thresholds and routing table that turn label scores into a decision.

    ``threshold`` above 1.0 means "route nothing" (no threshold met the target
    precision at calibration time). ``label_thresholds`` only ever tighten the
    global threshold for a label. ``teams`` maps label -> team; an empty table
    means identity (the team is the label); a label missing from a non-empty
    table, or mapped to ``None``, has no team and is escalated.
    """

    threshold: float
    margin: float = 0.0
    label_thresholds: Mapping[str, float] = field(default_factory=dict)
    ood_threshold: float | None = None
    teams: Mapping[str, str | None] = field(default_factory=dict)
    top_k: int = 3

    def __post_init__(self) -> None:
        _check_probability("threshold", self.threshold, upper=math.inf)
        _check_probability("margin", self.margin)
        for label, value in self.label_thresholds.items():
            _check_probability(f"label_thresholds[{label!r}]", value, upper=math.inf)
        if self.ood_threshold is not None and math.isnan(float(self.ood_threshold)):
            raise ValueError("ood_threshold must be a number or None")
        if int(self.top_k) < 1:
            raise ValueError("top_k must be >= 1")

    @property
    def routes_nothing(self) -> bool:
        return self.threshold > 1.0

    def threshold_for(self, label: str) -> float:
        return max(self.threshold, self.label_thresholds.get(label, 0.0))

    def team_for(self, label: str) -> str | None:
        if not self.teams:
            return label
        return self.teams.get(label)

    def tightened(
        self,
        *,
        threshold: float | None = None,
        margin: float | None = None,
        ood_threshold: float | None = None,
    ) -> "RoutingPolicy":
        """Apply operator overrides that may only make routing stricter.

        Operators tighten thresholds without a redeploy (e.g. an SSM parameter);
        a looser value than the calibrated one would void the precision
        guarantee, so it is ignored rather than applied.
        """
        changes: dict[str, Any] = {}
        if threshold is not None:
            changes["threshold"] = max(self.threshold, float(threshold))
        if margin is not None:
            changes["margin"] = max(self.margin, float(margin))
        if ood_threshold is not None:
            current = self.ood_threshold
            changes["ood_threshold"] = float(ood_threshold) if current is None else min(current, float(ood_threshold))
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "margin": self.margin,
            "label_thresholds": dict(self.label_thresholds),
            "ood_threshold": self.ood_threshold,
            "teams": dict(self.teams),
            "top_k": self.top_k,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RoutingPolicy":
        return cls(
            threshold=float(data["threshold"]),
            margin=float(data.get("margin", 0.0)),
            label_thresholds={str(k): float(v) for k, v in (data.get("label_thresholds") or {}).items()},
            ood_threshold=None if data.get("ood_threshold") is None else float(data["ood_threshold"]),
            teams={str(k): (None if v is None else str(v)) for k, v in (data.get("teams") or {}).items()},
            top_k=int(data.get("top_k", 3)),
        )


@dataclass(frozen=True)
class Decision:
    """What happens to one request, with everything needed to explain it."""

    decision: str
    label: str | None
    team: str | None
    confidence: float
    reasons: tuple[str, ...] = ()
    top_k: tuple[tuple[str, float], ...] = ()
    model_version: str | None = None
    ood_score: float | None = None

    @property
    def routed(self) -> bool:
        return self.decision == ROUTE

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "label": self.label,
            "team": self.team,
            "confidence": round(self.confidence, 6),
            "reasons": list(self.reasons),
            "top_k": [{"label": label, "score": round(score, 6)} for label, score in self.top_k],
            "model_version": self.model_version,
            "ood_score": None if self.ood_score is None else round(self.ood_score, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Decision":
        return cls(
            decision=str(data["decision"]),
            label=data.get("label"),
            team=data.get("team"),
            confidence=float(data.get("confidence", 0.0)),
            reasons=tuple(data.get("reasons") or ()),
            top_k=tuple((str(item["label"]), float(item["score"])) for item in data.get("top_k") or ()),
            model_version=data.get("model_version"),
            ood_score=None if data.get("ood_score") is None else float(data["ood_score"]),
        )


def decision_record(record_id: str | None, decision: Decision, scores: Mapping[str, float] | None) -> dict[str, Any]:
    """The per-request output format shared by predict, route, the server and the Lambda."""
    return {"id": record_id, **decision.to_dict(), "scores": None if scores is None else dict(scores)}


def escalation(reason: str, *, model_version: str | None = None) -> Decision:
    """A decision made without scores (empty text, model unavailable...)."""
    if reason not in REASONS:
        raise ValueError(f"unknown escalation reason {reason!r}")
    return Decision(decision=ESCALATE, label=None, team=None, confidence=0.0, reasons=(reason,), model_version=model_version)


def _ranked(scores: Mapping[str, float] | Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    items = list(scores.items()) if isinstance(scores, Mapping) else [(str(k), v) for k, v in scores]
    if not items:
        raise ValueError("scores must hold at least one label")
    ranked = []
    for label, score in items:
        score = float(score)
        if math.isnan(score):
            raise ValueError(f"score for {label!r} is NaN")
        ranked.append((label, score))
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return ranked


def decide(
    scores: Mapping[str, float] | Sequence[tuple[str, float]],
    policy: RoutingPolicy,
    *,
    ood_score: float | None = None,
    model_version: str | None = None,
) -> Decision:
    """Route to the top label's team, or escalate with every reason that applies."""
    ranked = _ranked(scores)
    label, confidence = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    reasons: list[str] = []
    if policy.routes_nothing:
        reasons.append(ROUTING_DISABLED)
    elif confidence < policy.threshold_for(label):
        reasons.append(LOW_CONFIDENCE)
    if confidence - runner_up < policy.margin:
        reasons.append(AMBIGUOUS)
    if policy.ood_threshold is not None and ood_score is not None and ood_score > policy.ood_threshold:
        reasons.append(OUT_OF_DISTRIBUTION)
    team = policy.team_for(label)
    if team is None:
        reasons.append(NO_TEAM_FOR_LABEL)
    return Decision(
        decision=ESCALATE if reasons else ROUTE,
        label=label,
        team=team,
        confidence=confidence,
        reasons=tuple(reasons),
        top_k=tuple(ranked[: policy.top_k]),
        model_version=model_version,
        ood_score=ood_score,
    )


# -- operator overrides and the one re-decision --------------------------------
OVERRIDE_KEYS = ("threshold", "margin", "ood_threshold")


class OverrideError(ValueError):
    """Operator overrides that cannot be applied (refused when read; the last good ones stay)."""


def parse_overrides(data: Any) -> dict[str, float]:
    """Validate overrides `{"threshold": t, "margin": m, "ood_threshold": o}` (each optional, null = unset).

    threshold: a finite number >= 0 (above 1 stops routing); margin: within [0, 1];
    ood_threshold: a finite number. Unknown keys are refused too (a typo must not pass for "no override").
    """
    if not isinstance(data, Mapping):
        raise OverrideError("overrides must be a JSON object")
    unknown = sorted(set(map(str, data)) - set(OVERRIDE_KEYS))
    if unknown:
        raise OverrideError(f"unknown override keys {unknown} (known: {', '.join(OVERRIDE_KEYS)})")
    overrides: dict[str, float] = {}
    for key in OVERRIDE_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise OverrideError(f"override {key!r} must be a finite number, got {value!r}")
        value = float(value)
        if key == "threshold" and value < 0 or key == "margin" and not 0.0 <= value <= 1.0:
            raise OverrideError(f"override {key!r} out of range: {value!r}")
        overrides[key] = value
    return overrides


def redecide(
    prediction: Mapping[str, Any] | None,
    policy: RoutingPolicy | None,
    teams_with_queue: frozenset[str] | None = None,
    *,
    record_id: Any = None,
) -> dict[str, Any]:
    """The decision record for a model's answer, re-made with `policy` (overrides applied) and the deployment's teams.

    One function for every deployment decision: the routing Lambda (production) and the
    shadow comparison (candidate) both call it, so both sides get the same overrides and
    the same teams. `prediction` is a decision record with `scores` (the endpoint's or the
    transform's answer); without usable scores or policy the request escalates with
    `model_unavailable` (or keeps the model's `empty_text`), never lost and never misrouted.
    `teams_with_queue` None means every team can receive requests.
    """
    record_id = prediction.get("id") if record_id is None and isinstance(prediction, Mapping) else record_id
    version = prediction.get("model_version") if isinstance(prediction, Mapping) else None
    scores = prediction.get("scores") if isinstance(prediction, Mapping) else None
    if isinstance(prediction, Mapping) and not scores and list(prediction.get("reasons") or ()) == [EMPTY_TEXT]:
        return decision_record(record_id, escalation(EMPTY_TEXT, model_version=version), {})
    if policy is None or "error" in (prediction or {}) or not isinstance(scores, Mapping) or not scores:
        return decision_record(record_id, escalation(MODEL_UNAVAILABLE, model_version=version), {})
    try:
        numbers = {str(k): float(v) for k, v in scores.items()}
        ood = prediction.get("ood_score")
        decision = decide(numbers, policy, ood_score=None if ood is None else float(ood), model_version=version)
    except (TypeError, ValueError):
        return decision_record(record_id, escalation(MODEL_UNAVAILABLE, model_version=version), {})
    if decision.routed and teams_with_queue is not None and decision.team not in teams_with_queue:
        # A team the deployment has no queue for: a human decides, it is not dropped.
        decision = replace(decision, decision=ESCALATE, reasons=(*decision.reasons, NO_TEAM_FOR_LABEL))
    return decision_record(record_id, decision, numbers)
