"""The console's request dependencies: who is signed in, their role, and the CSRF-checked form.

Every router declares what a route needs in its signature:

    user: SignedIn    a valid session (GET: redirected to /login; POST: 401)
    user: Admin       the same, and the admin role (403, written to the audit log)
    fields: Form      the urlencoded form (16 KiB at most), with the session's CSRF token (403 without)

`SignedIn` and `Admin` give the (user, session) pair; dependencies run in the
order they are declared, so a route checks the session and role before it
reads the form. The shared objects live on `app.state` (see app.py).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from sav_router.console.security import SESSION_COOKIE, decode_session, same_token
from sav_router.console.users import User

MAX_FORM_BYTES = 16 * 1024

Session = tuple[User, dict[str, Any]]


class Redirect(Exception):
    """Answered with a 303 to `url` (app.py's exception handler)."""

    def __init__(self, url: str) -> None:
        self.url = url


def flash(request: Request, user: str, **message: str) -> None:
    """A notice or error for the next page this user loads (POST-redirect-GET), kept on the server."""
    request.app.state.flashes[user] = {key: value for key, value in message.items() if value}


def take_flash(request: Request, user: str | None) -> dict[str, str]:
    return request.app.state.flashes.pop(user, {}) if user else {}


def wants_page(request: Request) -> bool:
    """A browser's form submission (answered with a redirect), not a script's request (answered with its status)."""
    return request.headers.get("sec-fetch-mode") == "navigate" or request.headers.get("sec-fetch-dest") == "document"


def refuse(request: Request, user: str, url: str, message: str, status: int) -> Response:
    """A refusal: a browser is sent back to `url` with the reason (POST-redirect-GET: a reload re-submits nothing); a script gets the status."""
    if wants_page(request):
        flash(request, user, error=message)
        return RedirectResponse(url, status_code=303)
    raise HTTPException(status, message)


def secure(request: Request) -> bool:
    """Whether cookies are Secure: told so, or served over TLS."""
    return request.app.state.settings.secure_cookies or request.url.scheme == "https"


def session_of(request: Request) -> Session | None:
    state = request.app.state
    data = decode_session(state.secret_key, request.cookies.get(SESSION_COOKIE))
    if data is None:
        return None
    if not data.get("sid") or data.get("sid") in state.revoked:
        return None  # logged out: ended on the server, whatever the browser kept
    found = state.users.get(str(data.get("user")))
    if found is None or found[1] != data.get("fp"):
        return None  # user removed or password changed: the session ends
    return found[0], data


async def signed_in(request: Request) -> Session:
    found = session_of(request)
    if found is None:
        if request.method == "GET":
            raise Redirect("/login?next=" + quote(request.url.path))
        raise HTTPException(401, "log in first")
    return found


async def admin(request: Request, found: Annotated[Session, Depends(signed_in)]) -> Session:
    if not found[0].is_admin:
        request.app.state.audit.record(found[0].name, "refused", path=request.url.path)
        raise HTTPException(403, "admins only: your role is " + found[0].role)
    return found


async def read_form(request: Request) -> dict[str, str]:
    """The posted form's fields (the last value of each), refused when too large or not urlencoded."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise HTTPException(415, "forms only")
    body = bytearray()
    async for chunk in request.stream():  # counted as it arrives: never more than the limit in memory
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
    body = bytes(body)
    return {name: values[-1] for name, values in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}


async def csrf_form(request: Request, found: Annotated[Session, Depends(signed_in)]) -> dict[str, str]:
    fields = await read_form(request)
    if not same_token(found[1].get("csrf"), fields.get("csrf")):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return fields


SignedIn = Annotated[Session, Depends(signed_in)]
Admin = Annotated[Session, Depends(admin)]
Form = Annotated[dict[str, str], Depends(csrf_form)]
