"""Sessions, CSRF and response headers.

- Session: a cookie holding {user, issued, csrf, password fingerprint}, signed
  with HMAC-SHA256 under a key kept in the console's state folder (0600), so a
  restart keeps people logged in and a changed password ends old sessions.
  HttpOnly, SameSite=Strict, Secure when served over TLS (or told so).
- CSRF: every form carries the session's token; every POST is refused (403)
  without it. The login form uses a double-submit token of its own.
- Headers: a strict Content-Security-Policy (scripts and styles from the app
  only, nothing inline, no framing), nosniff, no referrer, no caching of pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

SESSION_COOKIE = "sav_console"
LOGIN_COOKIE = "sav_console_login"
SESSION_SECONDS = 12 * 3600
SECRET_FILE = "secret.key"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def load_secret(folder: Path) -> bytes:
    """The signing key, created once (32 random bytes, owner-only)."""
    path = folder / SECRET_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path} is not a console secret (delete it to make a new one: everyone logs in again)")
    return key


def _sign(key: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode("ascii").rstrip("=")


def encode_session(key: bytes, data: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode("utf-8")).decode("ascii").rstrip("=")
    return f"{payload}.{_sign(key, payload.encode('ascii'))}"


def decode_session(key: bytes, value: str | None, *, now: float | None = None, max_age: float = SESSION_SECONDS) -> dict[str, Any] | None:
    if not value or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    if not hmac.compare_digest(signature, _sign(key, payload.encode("ascii"))):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    issued = data.get("issued") if isinstance(data, dict) else None
    if not isinstance(issued, (int, float)) or (now or time.time()) - issued > max_age:
        return None
    return data


def new_session(user: str, fingerprint: str) -> dict[str, Any]:
    return {"user": user, "issued": int(time.time()), "csrf": secrets.token_urlsafe(24), "fp": fingerprint}


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
