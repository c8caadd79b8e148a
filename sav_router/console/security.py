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
    return {"user": user, "issued": int(time.time()), "csrf": secrets.token_urlsafe(24), "fp": fingerprint, "sid": secrets.token_urlsafe(16)}


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# -- ASVS level 2 additions: throttling, server-side revocation, hosts, body size ---------------

HSTS = "max-age=31536000; includeSubDomains"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
COMMON_PASSWORDS = frozenset(
    """password password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword 12345678 123456789 1234567890
    0123456789 11111111 1111111111 00000000 0000000000 12341234 87654321 qwertyuiop qwertyuiop1 azertyuiop qwerty123 qwerty1234
    1q2w3e4r5t 1qaz2wsx3edc abcdefgh abcdefghij abc12345 abcd1234 iloveyou1 sunshine1 princess1 football1 baseball1 welcome1
    welcome123 letmein123 admin123 admin1234 administrator changeme changeme123 trustno1 whatever1 superman1 dragon123
    monkey123 master123 starwars1 computer1 internet1 secret123 sav-router savrouter console123 reviewer reviewer123""".split()
)


def password_problem(name: str, password: str, minimum: int) -> str | None:
    """Why a password is refused (too short, common, the user's own name), or None."""
    if len(password) < minimum:
        return f"the password needs at least {minimum} characters"
    folded = password.casefold()
    if folded in COMMON_PASSWORDS or len(set(password)) <= 2:
        return "that password is on the list of common passwords: choose another"
    if name and name.casefold() in folded and len(set(folded.replace(name.casefold(), ""))) < 4:
        return "the password must not be (mostly) the user name"
    return None


class Throttle:
    """Failed logins per user name and per client address, in a sliding window (in memory).

    After `limit` failures within `window` seconds a key is locked for the rest
    of the window; a success clears the user's count (not the address's).
    """

    def __init__(self, *, per_user: int = 5, per_address: int = 20, window: float = 900.0, clock=time.monotonic) -> None:
        self.per_user, self.per_address, self.window, self.clock = per_user, per_address, window, clock
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def retry_after(self, user: str, address: str) -> int:
        """Seconds until a login may be tried again for this user from this address (0: now)."""
        waits = []
        for key, limit in ((f"user:{user.casefold()}", self.per_user), (f"addr:{address}", self.per_address)):
            recent = self._recent(key)
            if len(recent) >= limit:
                waits.append(self.window - (self.clock() - recent[-limit]))
        return int(max(waits)) + 1 if waits else 0

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        for key in (f"user:{user.casefold()}", f"addr:{address}"):
            self._failures.setdefault(key, []).append(now)
        if len(self._failures) > 10_000:  # bounded: forget the oldest keys
            for key in list(self._failures)[:1000]:
                del self._failures[key]

    def succeeded(self, user: str) -> None:
        self._failures.pop(f"user:{user.casefold()}", None)


class RevokedSessions:
    """Session ids ended on the server (logout), kept until they would have expired anyway.

    A file in the console's state folder (0600), so a restart keeps them ended.
    """

    FILE = "revoked-sessions.json"

    def __init__(self, folder: Path, *, max_age: float = SESSION_SECONDS) -> None:
        self.path, self.max_age = folder / self.FILE, max_age
        self._ids: dict[str, float] = {}
        self._mtime: float | None = None

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != self._mtime:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._ids = {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
            except (ValueError, json.JSONDecodeError):
                self._ids = {}
            self._mtime = mtime

    def revoke(self, sid: str) -> None:
        self._load()
        now = time.time()
        self._ids = {k: v for k, v in self._ids.items() if now - v < self.max_age} | {sid: now}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._ids, handle)
        os.replace(tmp, self.path)
        self._mtime = None

    def __contains__(self, sid: object) -> bool:
        self._load()
        return sid in self._ids


def host_allowed(host_header: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether the Host header names an allowed host (any port); `*` allows every name."""
    if "*" in allowed:
        return True
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8070
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in {h.lower() for h in allowed}


class BodyLimit:
    """ASGI middleware: a declared Content-Length over `limit` bytes is answered 413 before anything is read.

    A body without one (chunked) is counted as it streams by `deps.read_form`,
    which stops reading at the limit: nothing over it is ever held in memory.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None:
                try:
                    too_big = int(length) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await _plain(send, 413, b"Request body too large.")
        return await self.app(scope, receive, send)


async def _plain(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
