"""Rendering the console's pages: the Jinja2 templates, their filters, and the words they show."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined, select_autoescape

from sav_router.console.deps import session_of, take_flash
from sav_router.console.sources import BATCH, ESCALATIONS, RECHECK
from sav_router.core import policy

QUEUES = {ESCALATIONS: "Escalation queue", BATCH: "Annotation batch", RECHECK: "Re-check"}
REASONS = {
    policy.LOW_CONFIDENCE: "the model was not confident enough",
    policy.AMBIGUOUS: "two labels were too close to call",
    policy.OUT_OF_DISTRIBUTION: "unlike anything the model was trained on",
    policy.NO_TEAM_FOR_LABEL: "no team handles the label it found",
    policy.EMPTY_TEXT: "the request is empty",
    policy.MODEL_UNAVAILABLE: "the model was unavailable",
    policy.ROUTING_DISABLED: "routing is switched off",
}
REASONS_SHORT = {
    policy.LOW_CONFIDENCE: "not confident",
    policy.AMBIGUOUS: "too close to call",
    policy.OUT_OF_DISTRIBUTION: "unlike training data",
    policy.NO_TEAM_FOR_LABEL: "no team for the label",
    policy.EMPTY_TEXT: "empty request",
    policy.MODEL_UNAVAILABLE: "model unavailable",
    policy.ROUTING_DISABLED: "routing switched off",
}
NOTICES = {
    "answered": "Answer saved. Press u to take it back.",
    "skipped": "Skipped: it stays in the queue for later or for someone else.",
    "undone": "Last answer taken back: here it is again.",
    "nothing_to_undo": "Nothing to take back.",
    "lease_lost": "That request was no longer yours (answered elsewhere, or its lease ran out). Here is the next one.",
    "promoted": "Promoted.",
    "rolled_back": "Rolled back.",
    "compared": "Comparison done.",
    "batch": "Batch queued.",
    "settled": "Re-checks settled.",
}
NOVELTY_TESTS = {  # what each novelty test of model.ood means, in the dashboard's words
    "distance": "far from every training request",
    "out_of_scope_neighbours": "near requests answered out of scope",
    "distance_plus_votes": "distance plus out-of-scope neighbours, one test (a bundle trained before the two tests)",
}


def _number(value: Any) -> float | None:
    """A finite number, or None for anything missing (undefined, None, NaN, text)."""
    if isinstance(value, Undefined) or value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def templates() -> Environment:
    folder = Path(str(resources.files("sav_router.console").joinpath("templates")))
    # ChainableUndefined: a figure a report or manifest lacks (a recalibrated model has no check
    # metrics) renders as "–", never a 500.
    env = Environment(
        loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True, undefined=ChainableUndefined,
    )
    env.filters["pct"] = lambda value, digits=1: "–" if _number(value) is None else f"{100 * _number(value):.{digits}f}%"
    env.filters["num"] = lambda value, digits=3: "–" if _number(value) is None else f"{_number(value):.{digits}f}"
    env.filters["reason"] = lambda code: REASONS.get(code, str(code).replace("_", " "))
    env.filters["reason_short"] = lambda code: REASONS_SHORT.get(code, str(code).replace("_", " "))
    return env


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template rendered for whoever is signed in (or nobody), with the notice named by `?done=`."""
    state = request.app.state
    try:
        found = session_of(request)
    except Exception:  # an unreadable users file: the page still renders, signed out
        found = None
    user, session = found if found else (None, {})
    flashed = take_flash(request, user.name if user else None) if request.method == "GET" else {}
    notice = flashed.get("notice") or NOTICES.get(request.query_params.get("done", ""))
    if flashed.get("error") and not context.get("error"):
        context["error"] = flashed["error"]
    prefs = state.prefs.get(user.name) if user else {}
    body = state.templates.get_template(template).render(
        user=user, csrf=session.get("csrf", ""), source=state.source, queues=QUEUES, path=request.url.path,
        notice=notice, prefs=prefs, lease_seconds=getattr(state.settings, "lease_seconds", 900), **context,
    )
    return HTMLResponse(body, status_code=status)
