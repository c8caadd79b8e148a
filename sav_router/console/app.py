"""The console's FastAPI application: server-rendered pages, forms, no script but the app's own.

GET  /login, POST /login, POST /logout
GET  /queue/{escalations|batch}            the reviewer's current request (kept across reloads)
POST /queue/{name}/answer|skip|undo        an answer, a skip, taking back the last answer
POST /queue/batch/start                    admin: rank a batch of logged requests (`select`)
GET  /dashboard                            evaluation, live precision, escalations over time
GET  /models, /models/{version}            registry, comparison with production
POST /models/{version}/compare|promote     admin: the CLI's compare / promote (gate-checked)
POST /models/rollback                      admin
GET  /static/...                           CSS and the keyboard script, served by the app

Every page but /login and /static needs a session; every POST needs the
session's CSRF token. Request text is shown on pages, never logged.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sav_router.console import charts, dashboard
from sav_router.console.audit_log import AuditLog
from sav_router.console.security import HEADERS, LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, decode_session, encode_session, load_secret, new_session, same_token
from sav_router.console.sources import BATCH, ESCALATIONS, ActionUnavailable
from sav_router.console.users import User, UsersFile
from sav_router.core.labels import out_of_scope_label
from sav_router.review.queue import LeaseLost
from sav_router.review.session import choices_for
from sav_router.loop.workspace import RegistryError

log = logging.getLogger("sav_router.console")

MAX_FORM_BYTES = 16 * 1024
QUEUES = {ESCALATIONS: "Escalation queue", BATCH: "Annotation batch"}
REASONS = {
    "low_confidence": "the model was not confident enough",
    "ambiguous": "two labels were too close to call",
    "out_of_distribution": "unlike anything the model was trained on",
    "no_team_for_label": "no team handles the label it found",
    "empty_text": "the request is empty",
    "model_unavailable": "the model was unavailable",
    "routing_disabled": "routing is switched off",
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
}


@dataclass
class ConsoleSettings:
    state_dir: Path  # secret key and audit log
    users_file: Path
    secure_cookies: bool = False  # Secure cookies even over plain HTTP (behind a TLS proxy)


def _templates() -> Environment:
    folder = Path(str(resources.files("sav_router.console").joinpath("templates")))
    env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda value, digits=1: "–" if value is None else f"{100 * float(value):.{digits}f}%"
    env.filters["num"] = lambda value, digits=3: "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.{digits}f}"
    env.filters["reason"] = lambda code: REASONS.get(code, str(code).replace("_", " "))
    return env


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


def create_app(source: Any, settings: ConsoleSettings) -> FastAPI:
    users = UsersFile(settings.users_file)
    key = load_secret(settings.state_dir)
    audit = AuditLog(settings.state_dir / "audit.jsonl")
    env = _templates()
    app = FastAPI(title="sav-router console", docs_url=None, redoc_url=None, openapi_url=None)
    static = Path(str(resources.files("sav_router.console").joinpath("static")))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def secure(request: Request) -> bool:
        return settings.secure_cookies or request.url.scheme == "https"

    def session_of(request: Request) -> tuple[User, dict[str, Any]] | None:
        data = decode_session(key, request.cookies.get(SESSION_COOKIE))
        if data is None:
            return None
        found = users.get(str(data.get("user")))
        if found is None or found[1] != data.get("fp"):
            return None  # user removed or password changed: the session ends
        return found[0], data

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        found = session_of(request)
        user, session = found if found else (None, {})
        body = env.get_template(template).render(
            user=user, csrf=session.get("csrf", ""), source=source, queues=QUEUES, path=request.url.path,
            notice=NOTICES.get(request.query_params.get("done", "")), **context,
        )
        return HTMLResponse(body, status_code=status)

    def require(request: Request, *, admin: bool = False) -> tuple[User, dict[str, Any]]:
        found = session_of(request)
        if found is None:
            if request.method == "GET":
                raise _Redirect("/login?next=" + quote(request.url.path))
            raise HTTPException(401, "log in first")
        if admin and not found[0].is_admin:
            audit.record(found[0].name, "refused", path=request.url.path)
            raise HTTPException(403, "admins only: your role is " + found[0].role)
        return found

    async def form_of(request: Request, session: dict[str, Any] | None) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise HTTPException(415, "forms only")
        fields = {name: values[-1] for name, values in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}
        if session is not None and not same_token(session.get("csrf"), fields.get("csrf")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return fields

    @app.exception_handler(_Redirect)
    async def redirect(request: Request, exc: _Redirect) -> Response:
        return RedirectResponse(exc.url, status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return page(request, "error.html", status=exc.status_code, status_code=exc.status_code, message=str(exc.detail))

    # -- login ---------------------------------------------------------------
    def login_page(request: Request, *, error: str | None = None, status: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", status=status, login_token=token, error=error, next=request.query_params.get("next", ""))
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), max_age=1800)
        return response

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return login_page(request)

    @app.post("/login")
    async def login(request: Request) -> Response:
        fields = await form_of(request, None)
        if not same_token(request.cookies.get(LOGIN_COOKIE), fields.get("login_token")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the login page and try again")
        name = fields.get("username", "").strip()
        user = await run_in_threadpool(users.authenticate, name, fields.get("password", ""))
        if user is None:
            audit.record(name or None, "login_failed")
            return login_page(request, error="Unknown user or wrong password.", status=401)
        audit.record(user.name, "login")
        target = fields.get("next", "")
        response = RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, encode_session(key, new_session(user.name, users.get(user.name)[1])),
            httponly=True, samesite="strict", secure=secure(request), max_age=SESSION_SECONDS,
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        user, session = require(request)
        await form_of(request, session)
        audit.record(user.name, "logout")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    async def home(request: Request) -> Response:
        require(request)
        return RedirectResponse(f"/queue/{ESCALATIONS}", status_code=303)

    # -- queues --------------------------------------------------------------
    def desk_of(name: str):
        if name not in QUEUES:
            raise HTTPException(404, "no such queue")
        desk = source.desks.get(name)
        if desk is None:
            raise HTTPException(404, "this source has no annotation batch (see the README: Label Studio)")
        return desk

    def known_labels(item) -> list[str]:
        labels = set(source.labels(item.model_version)) | {label for label, _ in item.top_k} | ({item.label} if item.label else set())
        return sorted(labels - {out_of_scope_label()})

    @app.get("/queue/{name}", response_class=HTMLResponse)
    async def queue_page(request: Request, name: str) -> Response:
        user, _ = require(request)
        desk = desk_of(name)
        item = await run_in_threadpool(desk.current, user.name)
        pending = await run_in_threadpool(desk.pending)
        labels = known_labels(item) if item is not None else []
        if item is not None and item.audit:
            # Blind: the same fixed (alphabetical) list for every audit sample, not the model's candidates
            choices = [(label, None) for label in labels]
        else:
            choices = choices_for(item) if item is not None else []
        return page(
            request, "queue.html", name=name, title=QUEUES[name], item=item, choices=choices[:9],
            labels=labels, pending=pending, out_of_scope=out_of_scope_label(),
        )

    @app.post("/queue/{name}/answer")
    async def answer(request: Request, name: str) -> Response:
        user, session = require(request)
        fields = await form_of(request, session)
        desk = desk_of(name)
        item_id, label = fields.get("item_id", ""), fields.get("label", "").strip()
        item = await run_in_threadpool(desk.current, user.name)
        if item is None or item.id != item_id:
            return RedirectResponse(f"/queue/{name}?done=lease_lost", status_code=303)
        if label != out_of_scope_label() and label not in known_labels(item):
            raise HTTPException(400, "not a known label: pick one from the list, or out of scope")
        try:
            row = await run_in_threadpool(desk.answer, user.name, item_id, label)
        except LeaseLost:
            return RedirectResponse(f"/queue/{name}?done=lease_lost", status_code=303)
        audit.record(user.name, "answer", queue=name, id=item_id, label=label, split=row["split"], model_version=row.get("model_version"))
        return RedirectResponse(f"/queue/{name}?done=answered", status_code=303)

    @app.post("/queue/{name}/skip")
    async def skip(request: Request, name: str) -> Response:
        user, session = require(request)
        fields = await form_of(request, session)
        try:
            await run_in_threadpool(desk_of(name).skip, user.name, fields.get("item_id", ""))
        except LeaseLost:
            return RedirectResponse(f"/queue/{name}?done=lease_lost", status_code=303)
        audit.record(user.name, "skip", queue=name, id=fields.get("item_id"))
        return RedirectResponse(f"/queue/{name}?done=skipped", status_code=303)

    @app.post("/queue/{name}/undo")
    async def undo(request: Request, name: str) -> Response:
        user, session = require(request)
        await form_of(request, session)
        item = await run_in_threadpool(desk_of(name).undo, user.name)
        if item is None:
            return RedirectResponse(f"/queue/{name}?done=nothing_to_undo", status_code=303)
        audit.record(user.name, "undo", queue=name, id=item.id)
        return RedirectResponse(f"/queue/{name}?done=undone", status_code=303)

    @app.post("/queue/batch/start")
    async def start_batch(request: Request) -> Response:
        user, session = require(request, admin=True)
        fields = await form_of(request, session)
        try:
            count = await run_in_threadpool(source.start_batch, int(fields.get("k") or 20))
        except (ActionUnavailable, ValueError) as exc:
            raise HTTPException(409, str(exc)) from None
        audit.record(user.name, "batch_started", count=count)
        return RedirectResponse(f"/queue/{BATCH}?done=batch", status_code=303)

    # -- dashboard -----------------------------------------------------------
    @app.get("/dashboard", response_class=HTMLResponse)
    async def dashboard_page(request: Request) -> Response:
        require(request)
        return page(request, "dashboard.html", **await run_in_threadpool(_dashboard_context, source, request.query_params))

    # -- models --------------------------------------------------------------
    @app.get("/models", response_class=HTMLResponse)
    async def models_page(request: Request) -> Response:
        require(request)
        return page(request, "models.html", models=await run_in_threadpool(source.models), history=list(reversed(source.history()))[:20])

    def model_page(request: Request, version: str, *, error: str | None = None, status: int = 200) -> HTMLResponse:
        models = {m["version"]: m for m in source.models()}
        if version not in models:
            raise HTTPException(404, "no such model version")
        comparison = source.comparison(version)
        texts: dict[str, str] = {}
        if comparison:
            ids = {rid for flip in comparison.get("flips", {}).values() for rid in flip.get("examples", [])}
            texts = source.texts(ids)
        return page(request, "model.html", status=status, model=models[version], comparison=comparison, texts=texts, error=error, production=source.production_version())

    @app.get("/models/{version}", response_class=HTMLResponse)
    async def model_detail(request: Request, version: str) -> Response:
        require(request)
        return await run_in_threadpool(model_page, request, version)

    @app.post("/models/rollback")
    async def rollback(request: Request) -> Response:
        user, session = require(request, admin=True)
        fields = await form_of(request, session)
        try:
            result = await run_in_threadpool(lambda: source.rollback(reason=fields.get("reason") or None, by=user.name))
        except (RegistryError, ActionUnavailable) as exc:
            audit.record(user.name, "rollback_refused", reason=str(exc))
            raise HTTPException(409, str(exc)) from None
        audit.record(user.name, "rollback", version=result["version"], previous=result["previous"], reason=fields.get("reason") or None)
        return RedirectResponse("/models?done=rolled_back", status_code=303)

    @app.post("/models/{version}/compare")
    async def compare(request: Request, version: str) -> Response:
        user, session = require(request, admin=True)
        await form_of(request, session)
        try:
            report = await run_in_threadpool(source.compare, version)
        except (ActionUnavailable, RegistryError, ValueError) as exc:
            return model_page(request, version, error=str(exc), status=409)
        audit.record(user.name, "compare", version=version, passed=report["gate"]["passed"])
        return RedirectResponse(f"/models/{quote(version)}?done=compared", status_code=303)

    @app.post("/models/{version}/promote")
    async def promote(request: Request, version: str) -> Response:
        user, session = require(request, admin=True)
        fields = await form_of(request, session)
        force, reason = fields.get("force") == "on", (fields.get("reason") or "").strip() or None
        try:
            result = await run_in_threadpool(lambda: source.promote(version, force=force, reason=reason, by=user.name))
        except (RegistryError, ActionUnavailable) as exc:
            audit.record(user.name, "promote_refused", version=version, forced=force, reason=reason, why=str(exc))
            return model_page(request, version, error=str(exc), status=409)
        audit.record(user.name, "promote", version=version, previous=result["previous"], forced=force, reason=reason)
        return RedirectResponse(f"/models/{quote(version)}?done=promoted", status_code=303)

    return app


def _dashboard_context(source: Any, query: Any) -> dict[str, Any]:
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
    if details:
        rc = details["risk_coverage"]
        target = (report or {}).get("target_precision")
        svgs["risk_coverage"] = charts.risk_coverage(rc["coverage"], rc["risk"], operating_coverage=(report or {}).get("coverage"), target_risk=1 - target if target else None, aurc=rc.get("aurc"))
        rel = details["reliability"]
        svgs["reliability"] = charts.reliability([("before temperature", rel["before_temperature"]), ("after temperature", rel["after_temperature"])])
        svgs["confusion"] = charts.confusion(details["confusion"]["labels"], details["confusion"]["matrix"])
    answers = source.audit_answers()
    live = dashboard.audit_over_time(answers, version=version)
    target = (report or {}).get("target_precision")
    if live:
        svgs["live"] = charts.interval_over_time(live, target=target)
    traffic = dashboard.escalations_over_time(source.traffic())
    if traffic["buckets"]:
        svgs["escalations"] = charts.escalation_bars(traffic["buckets"], traffic["reasons"])
    return {
        "versions": versions, "version": version, "production": production, "reports": list(reports), "report_name": name,
        "report": report, "details": details, "examples": (details or {}).get("examples") or {}, "svgs": svgs,
        "per_label": dashboard.per_label_rows(report or {}), "live": live, "traffic": traffic,
    }
