"""The dashboard: a model version's evaluation report, the estimated label-error rates of its check and calibrate rows,
the requests each novelty test flagged, live precision from audit samples, escalations over time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from sav_router.console import charts, dashboard
from sav_router.console.deps import SignedIn
from sav_router.console.pages import NOVELTY_TESTS, REASONS_SHORT, page

router = APIRouter()


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(request: Request, found: SignedIn) -> Response:
    return page(request, "dashboard.html", **await run_in_threadpool(dashboard_context, request.app.state.source, request.query_params))


def dashboard_context(source: Any, query: Any) -> dict[str, Any]:
    models = source.models()
    versions = [m["version"] for m in models]
    production = source.production_version()
    version = query.get("version") or production or (versions[-1] if versions else None)
    if version not in versions:
        version = production or (versions[-1] if versions else None)
    reports = source.reports(version) if version else {}
    name = query.get("report") if query.get("report") in reports else next(iter(reports), None)
    report, details = source.report(version, name) if name else (None, None)
    svgs: dict[str, str] = {}
    tables: dict[str, Any] = {}
    if not isinstance(report, dict):
        report = None
    if not isinstance(details, dict):
        details = None
    if details:  # each chart only when its data is there (an older or partial details.json draws what it can)
        rc, rel, confusion = details.get("risk_coverage") or {}, details.get("reliability") or {}, details.get("confusion") or {}
        target = (report or {}).get("target_precision")
        if rc.get("coverage") and rc.get("risk"):
            svgs["risk_coverage"] = charts.risk_coverage(rc["coverage"], rc["risk"], operating_coverage=(report or {}).get("coverage"), target_risk=1 - target if target else None, aurc=rc.get("aurc"))
            step = max(1, len(rc["coverage"]) // 10)
            tables["risk_coverage"] = [(c, r) for c, r in list(zip(rc["coverage"], rc["risk"]))[::step]]
        if rel.get("before_temperature") is not None and rel.get("after_temperature") is not None:
            svgs["reliability"] = charts.reliability([("before temperature", rel["before_temperature"]), ("after temperature", rel["after_temperature"])])
            tables["reliability"] = {"before temperature": rel["before_temperature"], "after temperature": rel["after_temperature"]}
        if confusion.get("labels") and confusion.get("matrix"):
            svgs["confusion"] = charts.confusion(confusion["labels"], confusion["matrix"])
            tables["confusion"] = confusion
    answers = source.audit_answers()
    live = dashboard.audit_over_time(answers, version=version)
    target = (report or {}).get("target_precision")
    if live:
        svgs["live"] = charts.interval_over_time(live, target=target)
    logged = list(source.traffic())
    manifest = source.manifest(version) if version else None
    traffic = dashboard.escalations_over_time(logged)
    if traffic["buckets"]:
        svgs["escalations"] = charts.escalation_bars(traffic["buckets"], traffic["reasons"], REASONS_SHORT)
    return {
        "versions": versions, "version": version, "production": production, "reports": list(reports), "report_name": name,
        "report": report, "details": details, "examples": (details or {}).get("examples") or {}, "svgs": svgs,
        "per_label": dashboard.per_label_rows(report or {}), "live": live, "traffic": traffic, "tables": tables,
        "label_doubts": dashboard.label_doubt_rows(report, (manifest or {}).get("calibration")),
        "novelty": dashboard.novelty_rows(report, logged, manifest, version=version), "novelty_words": NOVELTY_TESTS,
    }
