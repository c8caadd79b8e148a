"""Logging in and out: a double-submit token on the login form, then a signed session cookie."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sav_router.console.deps import Form, SignedIn, read_form, secure
from sav_router.console.pages import page
from sav_router.console.security import LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, encode_session, new_session, same_token

router = APIRouter()


def login_page(request: Request, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", status=status, login_token=token, error=error, next=request.query_params.get("next", ""))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), max_age=1800)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    state = request.app.state
    fields = await read_form(request)
    if not same_token(request.cookies.get(LOGIN_COOKIE), fields.get("login_token")):
        raise HTTPException(403, "missing or wrong CSRF token: reload the login page and try again")
    name = fields.get("username", "").strip()[:64]
    address = request.client.host if request.client else "unknown"
    wait = state.throttle.retry_after(name, address)
    if wait:
        state.audit.record(name or None, "login_throttled", address=address, retry_after=wait)
        minutes = max(1, round(wait / 60))
        response = login_page(request, error=f"Too many failed logins for this user or from this address: try again in {minutes} minute{'s' if minutes > 1 else ''}, or ask an admin.", status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    user = await run_in_threadpool(state.users.authenticate, name, fields.get("password", ""))
    if user is None:
        state.throttle.failed(name, address)
        state.audit.record(name or None, "login_failed", address=address)
        return login_page(request, error="Unknown user or wrong password.", status=401)
    state.throttle.succeeded(user.name)
    state.audit.record(user.name, "login", address=address)
    target = fields.get("next", "")
    response = RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, encode_session(state.secret_key, new_session(user.name, state.users.get(user.name)[1])),
        httponly=True, samesite="strict", secure=secure(request), max_age=SESSION_SECONDS,
    )
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, found: SignedIn, fields: Form) -> Response:
    request.app.state.revoked.revoke(str(found[1].get("sid")))  # ended on the server: the old cookie no longer works
    request.app.state.audit.record(found[0].name, "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
