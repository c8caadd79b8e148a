"""Figures for the dashboard, from reports, audit answers and the traffic log (pure Python)."""

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
