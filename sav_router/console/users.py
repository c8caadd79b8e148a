"""The console's users file: name -> role and a slow, salted password hash.

    {"users": {"ana": {"role": "reviewer", "password": "scrypt$32768$8$1$<salt>$<hash>", "created_at": ...}}}

scrypt (standard library) with a random 16-byte salt per user; the file is
written atomically with mode 0600. Kept in the workspace (`console/users.json`)
unless `--users FILE` says otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (REVIEWER, ADMIN)
USERS_FILE = "users.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10  # and not on the list of common passwords (security.COMMON_PASSWORDS)
# scrypt cost: ~0.1 s and 32 MiB per check on a laptop core: slow for a guesser, fine for a login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


class UsersError(ValueError):
    """A bad user name, role or password, or an unreadable users file."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY: list[str] = []  # computed on first use: importing this module stays cheap


def _dummy() -> str:
    """A hash to check unknown names against, so they cost as much as known ones."""
    if not _DUMMY:
        _DUMMY.append(hash_password("not a password", salt=b"\0" * 16))
    return _DUMMY[0]


class UsersFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        if not self.path.is_file():
            return {"users": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UsersError(f"{self.path} is not a users file: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise UsersError(f"{self.path} is not a users file (no 'users' object)")
        return data

    def names(self) -> list[str]:
        return sorted(self._read()["users"])

    def add(self, name: str, role: str, password: str, *, now: str | None = None) -> User:
        """Add a user, or replace the role and password of an existing one."""
        if not NAME_PATTERN.match(name):
            raise UsersError(f"user name {name!r}: letters, digits and . _ @ - only (at most 64, not starting with punctuation)")
        if role not in ROLES:
            raise UsersError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        from sav_router.console.security import password_problem

        problem = password_problem(name, password, MIN_PASSWORD)
        if problem:
            raise UsersError(problem)
        from sav_router.core.clock import utc_now

        data = self._read()
        data["users"][name] = {"role": role, "password": hash_password(password), "created_at": now or utc_now().isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False, encoding="utf-8") as handle:
            os.chmod(handle.name, 0o600)
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(handle.name, self.path)
        return User(name, role)

    def authenticate(self, name: str, password: str) -> User | None:
        entry = self._read()["users"].get(name)
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            verify_password(password, _dummy())
            return None
        return User(name, entry["role"]) if verify_password(password, str(entry.get("password", ""))) else None

    def get(self, name: str) -> tuple[User, str] | None:
        """The user and a fingerprint of its password hash (a changed password ends its sessions)."""
        entry = self._read()["users"].get(name)
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            return None
        return User(name, entry["role"]), hashlib.sha256(str(entry.get("password")).encode()).hexdigest()[:16]


class Preferences:
    """Per-user settings of the console (`{"ana": {"shortcuts": false}}`), in the console's state folder (0600)."""

    DEFAULTS = {"shortcuts": True}

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, user: str) -> dict:
        mine = self._read().get(user)
        return self.DEFAULTS | (mine if isinstance(mine, dict) else {})

    def set(self, user: str, **values: object) -> None:
        data = self._read()
        data[user] = (data.get(user) if isinstance(data.get(user), dict) else {}) | values
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, suffix=".tmp", delete=False, encoding="utf-8") as handle:
            os.chmod(handle.name, 0o600)
            json.dump(data, handle)
        os.replace(handle.name, self.path)
