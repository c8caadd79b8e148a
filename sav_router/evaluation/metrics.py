"""Evaluation on labeled requests: the report a Batch Transform run produces.

Gold labels the model does not know are out of scope: routing one is a
misroute, escalating it is right. `report.json` schema (all rates in [0, 1]):

- `n_examples`, `n_in_scope`: counts
- `accuracy`: top-1 accuracy on in-scope examples (before any threshold)
- `coverage`: share of all examples routed; `escalation_rate` = 1 - coverage
- `routed_precision`: share of routed examples whose label is the gold label
  (a routed out-of-scope example counts as wrong);
  `routed_precision_lower_bound`: its one-sided Clopper-Pearson bound at the
  bundle's confidence level; `team_routed_precision`: same at team level
- `out_of_scope`: {`count`, `escalated_rate`}
- `aurc`: area under the risk-coverage curve (in-scope, calibrated confidence)
- `ece`: {`before_temperature`, `after_temperature`} (in-scope, 15 bins)
- `threshold`: the policy that made the decisions
- `escalation_reasons`: count per reason; `routed_per_team`: count per team
- `novelty_tests`: per novelty test of the bundle's detector (`distance`, and with
  outlier exposure `out_of_scope_neighbours`; `distance_plus_votes` for a bundle
  of the previous formula), {`flagged`, `in_scope`, `out_of_scope`, `alone`}: the
  requests it flagged (each is escalated `out_of_distribution`), of which gold in
  scope (false alarms) and out of scope, and how many no other test flagged
- `label_doubts`: the estimated label-error rate of the evaluated rows (in scope), from the
  bundle's own scores of rows it never trained on (check rows), by confident learning
  (`sav_router.doubts.estimate`): {`rows`, `doubts`, `rate`, `interval` (Clopper-Pearson),
  `confidence`, `method`}; null without embeddings (a report from logged scores) or rows
- `per_label`: {label: {precision, recall, f1, support}} (top-1, in-scope)
- `promise`: what the bundle's precision promise covers (annotated topics only,
  or traffic like its calibrate sample, off-topic share included)
- `monitor`: {`line`, `alarm`, `remedy`}: the drift monitor on the evaluated
  requests against the calibration sample (`sav_router.monitoring.drift`)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sav_router.calibration.temperature import expected_calibration_error, softmax
from sav_router.calibration.promise import promise_text
from sav_router.core.stats import clopper_pearson_lower
from sav_router.data.annotations import Record
from sav_router.core.policy import Decision, RoutingPolicy
from sav_router.model.router import Router, Scored

SCHEMA_VERSION = 1


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coverage and selective risk when routing the k most confident, for every k; and the AURC."""
    if len(confidence) == 0:
        return np.zeros(0), np.zeros(0), 0.0
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(~correct[order])
    k = np.arange(1, len(order) + 1)
    risk = errors / k
    return k / len(order), risk, float(risk.mean())


def novelty_test_counts(flags: dict[str, np.ndarray], in_scope: np.ndarray) -> dict[str, dict[str, int]]:
    """Per novelty test: requests flagged, of which in scope / out of scope, and flagged by this test alone."""
    in_scope = np.asarray(in_scope, dtype=bool)
    out: dict[str, dict[str, int]] = {}
    for name, flagged in flags.items():
        flagged = np.asarray(flagged, dtype=bool)
        others = np.zeros_like(flagged)
        for other, other_flags in flags.items():
            if other != name:
                others |= np.asarray(other_flags, dtype=bool)
        out[name] = {"flagged": int(flagged.sum()), "in_scope": int((flagged & in_scope).sum()),
                     "out_of_scope": int((flagged & ~in_scope).sum()), "alone": int((flagged & ~others).sum())}
    return out


def per_label_metrics(gold: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for index, name in enumerate(labels):
        tp = int(((predicted == index) & (gold == index)).sum())
        fp = int(((predicted == index) & (gold != index)).sum())
        fn = int(((predicted != index) & (gold == index)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": tp + fn}
    return out


@dataclass
class Evaluation:
    report: dict[str, Any]
    confidence: np.ndarray  # calibrated top-1 confidence, in-scope rows
    confidence_raw: np.ndarray  # T=1 top-1 confidence, in-scope rows
    correct: np.ndarray  # top-1 correct, in-scope rows
    confusion: np.ndarray  # [gold, predicted] over known labels, in-scope rows
    labels: list[str]
    examples: dict[str, Any] | None = None  # misroutes, escalations, confusions with their request texts (evaluate())


def summarize(
    scored: Scored,
    decisions: Sequence[Decision],
    gold_labels: Sequence[str],
    *,
    labels: Sequence[str],
    policy: RoutingPolicy,
    temperature: float,
    confidence_level: float = 0.95,
    model_version: str | None = None,
    novelty_flags: dict[str, np.ndarray] | None = None,
) -> Evaluation:
    """Metrics from scores, decisions and gold labels (no model needed); `novelty_flags`: per novelty test, the rows it flags."""
    index = {label: i for i, label in enumerate(labels)}
    n = len(gold_labels)
    in_scope = np.array([label in index for label in gold_labels], dtype=bool)
    gold = np.array([index.get(label, -1) for label in gold_labels])
    predicted = scored.probabilities.argmax(axis=1) if n else np.zeros(0, dtype=int)
    correct = predicted == gold
    routed = np.array([d.routed for d in decisions], dtype=bool)
    routed_correct = routed & np.array([d.label == g for d, g in zip(decisions, gold_labels)], dtype=bool)
    team_correct = routed & np.array([d.team is not None and d.team == policy.team_for(g) and g in index for d, g in zip(decisions, gold_labels)])
    n_routed = int(routed.sum())
    conf = scored.probabilities.max(axis=1) if n else np.zeros(0)
    conf_raw = softmax(scored.logits, 1.0).max(axis=1) if n else np.zeros(0)
    _, _, aurc = risk_coverage(conf[in_scope], correct[in_scope])
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold[in_scope], predicted[in_scope]):
        confusion[g, p] += 1
    reasons = Counter(reason for d in decisions if not d.routed for reason in d.reasons)
    oos = ~in_scope
    report = {
        "schema_version": SCHEMA_VERSION,
        "model_version": model_version,
        "n_examples": n,
        "n_in_scope": int(in_scope.sum()),
        "accuracy": round(float(correct[in_scope].mean()), 4) if in_scope.any() else None,
        "coverage": round(n_routed / n, 4) if n else 0.0,
        "routed": n_routed,
        "routed_precision": round(float(routed_correct.sum() / n_routed), 4) if n_routed else None,
        "routed_precision_lower_bound": round(clopper_pearson_lower(int(routed_correct.sum()), n_routed, confidence_level), 4),
        "team_routed_precision": round(float(team_correct.sum() / n_routed), 4) if n_routed else None,
        "escalation_rate": round(1 - n_routed / n, 4) if n else 0.0,
        "out_of_scope": {
            "count": int(oos.sum()),
            "escalated_rate": round(float((~routed[oos]).mean()), 4) if oos.any() else None,
        },
        "aurc": round(aurc, 5),
        "ece": {
            "before_temperature": round(expected_calibration_error(softmax(scored.logits[in_scope], 1.0), gold[in_scope]), 4)
            if in_scope.any()
            else None,
            "after_temperature": round(expected_calibration_error(scored.probabilities[in_scope], gold[in_scope]), 4) if in_scope.any() else None,
        },
        "temperature": round(temperature, 4),
        "threshold": {
            "confidence": policy.threshold,
            "margin": policy.margin,
            "label_thresholds": dict(policy.label_thresholds),
            "ood": policy.ood_threshold,
        },
        "escalation_reasons": dict(sorted(reasons.items())),
        "routed_per_team": dict(sorted(Counter(d.team for d in decisions if d.routed).items())),
        "per_label": per_label_metrics(gold[in_scope], predicted[in_scope], labels),
        "novelty_tests": novelty_test_counts(novelty_flags, in_scope) if novelty_flags else {},
    }
    return Evaluation(report, conf[in_scope], conf_raw[in_scope], correct[in_scope], confusion, list(labels))


def evaluate(router: Router, records: Sequence[Record]) -> Evaluation:
    prediction = router.run([r.text for r in records])  # the same path as predict, route and the server
    if len(prediction.scored_rows) != len(records):
        raise ValueError("evaluation needs a text in every row (blank texts are rejected when annotations are read)")
    scored, decisions = prediction.scored, prediction.decisions
    calibration = router.manifest.calibration
    evaluation = summarize(
        scored,
        decisions,
        [str(r.label) for r in records],
        labels=router.labels,
        policy=router.policy,
        temperature=router.manifest.temperature,
        confidence_level=float(calibration.get("confidence", 0.95)),
        model_version=router.version,
        novelty_flags=novelty_flags(router, scored),
    )
    evaluation.report["target_precision"] = calibration.get("target_precision")
    evaluation.report["confidence_level"] = calibration.get("confidence")
    evaluation.examples = _examples(records, decisions, scored, router.labels)
    evaluation.report["label_doubts"] = label_doubts(scored, [str(r.label) for r in records], router.labels)
    evaluation.report["promise"] = promise_text(calibration)
    evaluation.report["monitor"] = monitor_line(router, decisions)
    return evaluation


def label_doubts(scored: Scored, gold_labels: Sequence[str], labels: Sequence[str]) -> dict[str, Any] | None:
    """The estimated label-error rate of the evaluated rows: the router's probabilities are out of sample on check rows
    (never trained on), so confident learning on them estimates how many gold labels are wrong (out-of-scope rows left out)."""
    from sav_router.doubts.estimate import label_error_estimate

    if scored.embeddings is None or not len(gold_labels):
        return None
    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index.get(label, -1) for label in gold_labels], dtype=np.int64)
    return label_error_estimate(scored.probabilities, gold, list(labels), np.asarray(scored.embeddings))


def novelty_flags(router: Router, scored: Scored) -> dict[str, np.ndarray] | None:
    """Per novelty test, the requests it flags under the router's policy (None without a detector or threshold)."""
    if router.ood is None or router.policy.ood_threshold is None or scored.embeddings is None or not len(scored.embeddings):
        return None
    return router.ood.novelty_tests(scored.embeddings, threshold=router.policy.ood_threshold)


def _examples(records: Sequence[Record], decisions: Sequence[Decision], scored: Scored, labels: Sequence[str], *, per_kind: int = 30, per_pair: int = 3) -> dict[str, Any]:
    """Requests behind the numbers: misroutes, escalations, and the most frequent confusions."""
    misroutes, escalations = [], []
    pairs: dict[tuple[str, str], list[str]] = {}
    predicted = scored.probabilities.argmax(axis=1) if len(records) else []
    for record, decision, top in zip(records, decisions, predicted):
        entry = {"id": record.id, "text": record.text, "gold": record.label, "label": decision.label, "confidence": round(float(decision.confidence), 4)}
        if decision.routed and decision.label != record.label:
            misroutes.append(entry)
        elif not decision.routed:
            escalations.append(entry | {"reasons": list(decision.reasons)})
        if record.label in labels and labels[int(top)] != record.label:
            pairs.setdefault((str(record.label), labels[int(top)]), []).append(record.text)
    confusions = sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0]))
    return {
        "n_misroutes": len(misroutes),
        "misroutes": misroutes[:per_kind],
        "n_escalations": len(escalations),
        "escalations": escalations[:per_kind],
        "top_confusions": [{"gold": g, "predicted": p, "count": len(texts), "examples": texts[:per_pair]} for (g, p), texts in confusions[:10]],
    }


def _reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append({"confidence": round(float(confidence[mask].mean()), 4), "accuracy": round(float(correct[mask].mean()), 4), "count": int(mask.sum())})
    return out


def curves(evaluation: Evaluation, *, points: int = 200) -> dict[str, Any]:
    """What the console draws (risk-coverage, reliability, confusion): `details.json` beside report.json."""
    coverage, risk, aurc = risk_coverage(evaluation.confidence, evaluation.correct)
    keep = np.unique(np.linspace(0, len(coverage) - 1, min(points, len(coverage))).round().astype(int)) if len(coverage) else np.zeros(0, dtype=int)
    return {
        "risk_coverage": {"coverage": [round(float(c), 4) for c in coverage[keep]], "risk": [round(float(r), 4) for r in risk[keep]], "aurc": round(aurc, 5)},
        "reliability": {
            "before_temperature": _reliability_bins(evaluation.confidence_raw, evaluation.correct),
            "after_temperature": _reliability_bins(evaluation.confidence, evaluation.correct),
        },
        "confusion": {"labels": list(evaluation.labels), "matrix": evaluation.confusion.tolist()},
    }


def monitor_line(router: Router, decisions: Sequence[Decision]) -> dict[str, Any] | None:
    """The drift monitor on the evaluated requests: are they like the calibration sample?"""
    from sav_router.monitoring.drift import check_drift

    reference = router.manifest.calibration.get("reference")
    if not reference or not reference.get("n"):
        return None
    report = check_drift([d.to_dict() | {"scores": {}} for d in decisions], reference)
    return {"line": report.line(), "alarm": report.alarm, "remedy": report.remedy}
