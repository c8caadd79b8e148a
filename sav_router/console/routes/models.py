"""The model registry: versions, a candidate's comparison with production; an admin compares, promotes, rolls back.

The rules are the CLI's (`Workspace.promote` with its gate, `compare_models`), called through the source.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sav_router.console.deps import Admin, Form, SignedIn, flash, refuse
from sav_router.console.pages import page
from sav_router.console.sources import ActionUnavailable
from sav_router.loop.workspace import RegistryError

router = APIRouter()

# The rules' messages are written for the command line; on a page they say what to do on the page.
_WORDS = [
    (re.compile(r"run `sav-router compare` \(or pass --force --reason TEXT\)"), "press “Compare with production” first (or tick “Force” and give a reason)"),
    (re.compile(r"\(pass --force --reason TEXT to override\)"), "(to promote it anyway, tick “Force” and give a reason)"),
    (re.compile(r"a forced promotion needs --reason TEXT \(it is recorded\)"), "a forced promotion needs a reason: fill in the Reason field (it is recorded)"),
    (re.compile(r" in /\S+"), ""),
    (re.compile(r"\s*\((?:use|route requests first:) `sav-router [^`]*`\)"), ""),
    (re.compile(r"`sav-router [^`]*`"), "the command line"),
]


def operator_words(message: str) -> str:
    for pattern, words in _WORDS:
        message = pattern.sub(words, message)
    return message[:1].upper() + message[1:] if message else message


def refused(request: Request, user: str, url: str, message: str) -> Response:
    return refuse(request, user, url, operator_words(message), 409)


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, found: SignedIn) -> Response:
    source = request.app.state.source
    return page(
        request, "models.html", models=await run_in_threadpool(source.models), history=list(reversed(source.history()))[:20],
        rollback_to=source.rollback_target(), production=source.production_version(),
    )


def model_page(request: Request, version: str, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    source = request.app.state.source
    models = {m["version"]: m for m in source.models()}
    if version not in models:
        raise HTTPException(404, "no such model version")
    comparison = source.comparison(version)
    texts: dict[str, str] = {}
    if comparison:
        ids = {rid for flip in comparison.get("flips", {}).values() for rid in flip.get("examples", [])}
        texts = source.texts(ids)
    return page(request, "model.html", status=status, model=models[version], comparison=comparison, texts=texts, error=error, production=source.production_version())


@router.get("/models/{version}", response_class=HTMLResponse)
async def model_detail(request: Request, version: str, found: SignedIn) -> Response:
    return await run_in_threadpool(model_page, request, version)


@router.post("/models/rollback")
async def rollback(request: Request, found: Admin, fields: Form) -> Response:
    user, audit = found[0], request.app.state.audit
    try:
        result = await run_in_threadpool(lambda: request.app.state.source.rollback(reason=fields.get("reason") or None, by=user.name))
    except (RegistryError, ActionUnavailable) as exc:
        audit.record(user.name, "rollback_refused", reason=str(exc))
        return refused(request, user.name, "/models", str(exc))
    audit.record(user.name, "rollback", version=result["version"], previous=result["previous"], reason=fields.get("reason") or None)
    flash(request, user.name, notice=f"Rolled back: {result['version']} is in production again (instead of {result['previous']}).")
    return RedirectResponse("/models?done=rolled_back", status_code=303)


@router.post("/models/{version}/compare")
async def compare(request: Request, version: str, found: Admin, fields: Form) -> Response:
    try:
        report = await run_in_threadpool(request.app.state.source.compare, version)
    except (ActionUnavailable, RegistryError, ValueError) as exc:
        return refused(request, found[0].name, f"/models/{quote(version)}", str(exc))
    request.app.state.audit.record(found[0].name, "compare", version=version, passed=report["gate"]["passed"])
    flash(request, found[0].name, notice=f"Comparison done: {version} {'passed' if report['gate']['passed'] else 'did not pass'} the promotion gate.")
    return RedirectResponse(f"/models/{quote(version)}?done=compared", status_code=303)


@router.post("/models/{version}/promote")
async def promote(request: Request, version: str, found: Admin, fields: Form) -> Response:
    user, audit = found[0], request.app.state.audit
    force, reason = fields.get("force") == "on", (fields.get("reason") or "").strip() or None
    try:
        result = await run_in_threadpool(lambda: request.app.state.source.promote(version, force=force, reason=reason, by=user.name))
    except (RegistryError, ActionUnavailable) as exc:
        audit.record(user.name, "promote_refused", version=version, forced=force, reason=reason, why=str(exc))
        return refused(request, user.name, f"/models/{quote(version)}", str(exc))
    audit.record(user.name, "promote", version=version, previous=result["previous"], forced=force, reason=reason)
    flash(request, user.name, notice=f"Promoted: {version} is in production" + (f" (instead of {result['previous']})." if result.get("previous") else "."))
    return RedirectResponse(f"/models/{quote(version)}?done=promoted", status_code=303)
