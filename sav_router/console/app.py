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

The routes are in routes/ (one router per area), their dependencies (session,
role, CSRF-checked form) in deps.py, page rendering in pages.py. What they
share is on `app.state`: settings, templates, source, users, audit (the audit
log) and secret_key (the session signing key).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from sav_router.console.audit_log import AuditLog
from sav_router.console.deps import Redirect
from sav_router.console.pages import page, templates
from sav_router.console.routes import auth, dashboard, models, queue, static
from sav_router.console.security import HEADERS, load_secret
from sav_router.console.users import UsersFile


@dataclass
class ConsoleSettings:
    state_dir: Path  # secret key and audit log
    users_file: Path
    secure_cookies: bool = False  # Secure cookies even over plain HTTP (behind a TLS proxy)


async def _security_headers(request: Request, call_next) -> Response:
    response = await call_next(request)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.url.path.startswith(static.PREFIX + "/"):
        response.headers["Cache-Control"] = "no-store"
    return response


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
    static.mount(app)
    for area in (auth, queue, dashboard, models):
        app.include_router(area.router)
    app.add_exception_handler(Redirect, _redirect)
    app.add_exception_handler(HTTPException, _http_error)
    app.middleware("http")(_security_headers)
    return app
