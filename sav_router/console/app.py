"""The console's FastAPI application: server-rendered pages, forms, no script but the app's own.

GET  /login, POST /login, POST /logout
GET  /queue/{escalations|batch|recheck}    the reviewer's current request (kept across reloads; re-checks blind)
POST /queue/{name}/answer|skip|undo        an answer, a skip, taking back the last answer
POST /queue/batch/start                    admin: rank a batch of logged requests (`select`)
POST /queue/recheck/settle                 admin: settle the answered re-checks (`settle`)
GET  /recheck/doubts, POST .../{key}/settle  admin: doubts left to an admin, settled with a label and a reason
GET  /dashboard                            evaluation, live precision, escalations over time
GET  /models, /models/{version}            registry, comparison with production
POST /models/{version}/compare|promote     admin: the CLI's compare / promote (gate-checked)
POST /models/rollback                      admin
GET  /static/...                           CSS and the keyboard script, served by the app

Every page but /login and /static needs a session; every POST needs the
session's CSRF token. Request text is shown on pages, never logged.

The routes are in routes/ (one router per area), their dependencies (session,
role, CSRF-checked form) in deps.py, page rendering in pages.py. What they
share is on `app.state`: settings, templates, source, users, audit (the audit
log) and secret_key (the session signing key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from sav_router.console.audit_log import AuditLog
from sav_router.console.deps import MAX_FORM_BYTES, Redirect
from sav_router.console.pages import page, templates
from sav_router.console.routes import auth, dashboard, models, queue, recheck, static
from sav_router.console.security import HEADERS, HSTS, LOOPBACK_HOSTS, BodyLimit, RevokedSessions, Throttle, host_allowed, load_secret
from sav_router.console.users import Preferences, UsersError, UsersFile
from sav_router.core.defaults import REVIEW_LEASE_SECONDS
from sav_router.loop.workspace import RegistryError

log = logging.getLogger("sav_router.console")


@dataclass
class ConsoleSettings:
    state_dir: Path  # secret key and audit log
    users_file: Path
    secure_cookies: bool = False  # Secure cookies even over plain HTTP (behind a TLS proxy)
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host header names served (DNS rebinding); "*" for any
    tls: bool = False  # served over TLS: Strict-Transport-Security on every answer
    lease_seconds: float = REVIEW_LEASE_SECONDS  # the page renews its lease at a third of this


def _add_headers(request: Request, response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.app.state.settings.tls or request.url.scheme == "https":
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if not request.url.path.startswith(static.PREFIX + "/"):
        response.headers["Cache-Control"] = "no-store"
    return response


async def _security_headers(request: Request, call_next) -> Response:
    if not host_allowed(request.headers.get("host"), request.app.state.settings.allowed_hosts):
        return _add_headers(request, Response("Unknown host name: this console answers only to the names its admin allowed (--allowed-host).", status_code=400, media_type="text/plain"))
    return _add_headers(request, await call_next(request))


ADMIN_HINTS = {
    UsersError: "The console's users file cannot be read. An admin should fix or restore it (it is WORKSPACE/console/users.json unless the console was started with another users file), then reload this page.",
    RegistryError: "The model registry cannot be read. An admin should restore registry.json in the workspace from a backup (or fix it by hand), then reload this page.",
}


async def _server_error(request: Request, exc: Exception) -> Response:
    """Any unexpected error: a page that keeps the security headers and says what an admin should do (details in the log only)."""
    hint = next((text for kind, text in ADMIN_HINTS.items() if isinstance(exc, kind)), None)
    log.error("console error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=hint is None)
    message = hint or "Something went wrong on the server. An admin should look at the console's log (the terminal it runs in) for the error, fix its cause and reload this page."
    try:
        response = page(request, "error.html", status=500, status_code=500, message=message)
    except Exception:  # the templates themselves failed: plain text, headers kept
        response = HTMLResponse("<!doctype html><title>Error</title><p>" + message + "</p>", status_code=500)
    return _add_headers(request, response)


async def _redirect(request: Request, exc: Redirect) -> Response:
    return RedirectResponse(exc.url, status_code=303)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return page(request, "error.html", status=exc.status_code, status_code=exc.status_code, message=str(exc.detail))


def create_app(source: Any, settings: ConsoleSettings) -> FastAPI:
    app = FastAPI(title="sav-router console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.templates = templates()
    app.state.source = source
    app.state.users = UsersFile(settings.users_file)
    app.state.audit = AuditLog(settings.state_dir / "audit.jsonl")
    app.state.secret_key = load_secret(settings.state_dir)
    app.state.throttle = Throttle()
    app.state.revoked = RevokedSessions(settings.state_dir)
    app.state.flashes = {}
    app.state.prefs = Preferences(settings.state_dir / "preferences.json")
    static.mount(app)
    for area in (auth, recheck, queue, dashboard, models):
        app.include_router(area.router)
    app.add_exception_handler(Redirect, _redirect)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
    app.middleware("http")(_security_headers)
    app.add_middleware(BodyLimit, limit=MAX_FORM_BYTES)
    return app
