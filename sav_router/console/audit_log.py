"""The console's audit log: who answered, skipped, undid, promoted or rolled back what, and logins.

One JSON line per action in `console/audit.jsonl` (append-only, fsynced):
ids, labels, versions and reasons typed by admins; never request text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sav_router.core.clock import utc_now
from sav_router.core.jsonio import append_jsonl


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, user: str | None, action: str, **detail: Any) -> None:
        row = {"at": utc_now().isoformat(timespec="seconds"), "user": user, "action": action}
        append_jsonl(self.path, [row | {key: value for key, value in detail.items() if value is not None}])
