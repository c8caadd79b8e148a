"""Figures for the dashboard, from reports, manifests, audit answers and the traffic log (pure Python but for the
label-doubt and novelty-test rules, imported where they are used)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sav_router.core.stats import CONFIDENCE, clopper_pearson


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None


def audit_over_time(answers: Iterable[Mapping[str, Any]], *, version: str | None = None, confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Cumulative live precision by day (all answers up to that day), with its exact interval."""
    by_day: dict[str, list[bool]] = defaultdict(list)
    for row in answers:
        if version and str(row.get("model_version")) != version:
            continue
        moment = _when(row.get("reviewed_at"))
        if moment is None:
            continue
        by_day[moment.date().isoformat()].append(str(row["label"]).strip() == str(row["model_label"]).strip())
    points, trials, correct = [], 0, 0
    for day in sorted(by_day):
        trials += len(by_day[day])
        correct += sum(by_day[day])
        low, high = clopper_pearson(correct, trials, confidence)
        points.append({"day": day, "audited": trials, "correct": correct, "precision": correct / trials, "low": low, "high": high})
    return points


def escalations_over_time(traffic: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Requests, escalation rate and reasons per day (per hour when the log spans under two days)."""
    rows = [(moment, row) for row in traffic if (moment := _when(row.get("at"))) is not None and row.get("decision")]
    if not rows:
        return {"unit": "day", "buckets": [], "reasons": []}
    span = max(m for m, _ in rows) - min(m for m, _ in rows)
    unit = "hour" if span.total_seconds() < 2 * 86400 and len({m.date() for m, _ in rows}) <= 2 and span.total_seconds() >= 3600 else "day"
    fmt = "%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"
    buckets: dict[str, dict[str, Any]] = {}
    totals: Counter[str] = Counter()
    for moment, row in rows:
        bucket = buckets.setdefault(moment.strftime(fmt), {"n": 0, "escalated": 0, "reasons": Counter(), "primary": Counter()})
        bucket["n"] += 1
        if row["decision"] != "route":
            bucket["escalated"] += 1
            bucket["primary"][(row.get("reasons") or ["unknown"])[0]] += 1  # each request once: the bars add up to the escalations
            for reason in row.get("reasons") or ["unknown"]:
                bucket["reasons"][reason] += 1
                totals[reason] += 1
    out = [{"bucket": key, "n": b["n"], "escalated": b["escalated"], "rate": b["escalated"] / b["n"], "reasons": dict(b["reasons"]), "primary": dict(b["primary"])} for key, b in sorted(buckets.items())]
    return {"unit": unit, "buckets": out, "reasons": [reason for reason, _ in totals.most_common()]}


def per_label_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-label precision / recall / F1 / support, weakest F1 first (what needs attention)."""
    rows = [{"label": label} | dict(values) for label, values in (report.get("per_label") or {}).items()]
    return sorted(rows, key=lambda row: (row.get("f1", 0), row["label"]))


def label_doubt_rows(report: Mapping[str, Any] | None, calibration: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The estimated label-error rate of the check rows (this report's `label_doubts`) and of the calibrate rows (the model's
    manifest, `calibration.label_doubts`), each with its interval and whether it reaches half the promise's error budget."""
    from sav_router.doubts.estimate import unreliable_promise

    target = (report or {}).get("target_precision") or (calibration or {}).get("target_precision")
    out = []
    for rows, estimate in (("check rows (this report)", (report or {}).get("label_doubts")),
                           ("calibrate rows (the model's manifest)", (calibration or {}).get("label_doubts"))):
        if not isinstance(estimate, Mapping) or not {"rate", "interval", "rows", "doubts"} <= set(estimate):
            out.append({"rows": rows, "estimate": None})
            continue
        unreliable = target is not None and unreliable_promise(estimate, float(target))
        out.append({"rows": rows, "estimate": dict(estimate), "unreliable": unreliable,
                    "budget": None if target is None else (1 - float(target)) / 2})
    return out


def novelty_rows(report: Mapping[str, Any] | None, traffic: Iterable[Mapping[str, Any]], manifest: Mapping[str, Any] | None,
                 *, version: str | None) -> dict[str, Any]:
    """Per novelty test, the requests it flagged: in this report (`novelty_tests`) and in the logged traffic of this model version
    (which tests each logged `ood_score` fired, `model.ood.fired_tests`, from the manifest's `ood.params` and OOD threshold)."""
    from sav_router.model.ood import fired_tests

    reported = (report or {}).get("novelty_tests") or {}
    params = ((manifest or {}).get("ood") or {}).get("params")
    threshold = ((manifest or {}).get("policy") or {}).get("ood_threshold")
    logged: Counter[str] = Counter()
    alone: Counter[str] = Counter()
    scored = 0
    if params is not None and threshold is not None:
        for row in traffic:
            if (version and str(row.get("model_version")) != version) or row.get("ood_score") is None:
                continue
            scored += 1
            fired = fired_tests(float(row["ood_score"]), params, float(threshold))
            logged.update(fired)
            if len(fired) == 1:
                alone[fired[0]] += 1
    tests = list(dict.fromkeys([*reported, *logged]))
    rows = [{"test": name, "report": reported.get(name), "logged": logged.get(name, 0) if scored else None, "logged_alone": alone.get(name, 0)}
            for name in tests]
    return {"rows": rows, "logged_requests": scored, "params": params is not None and threshold is not None}
