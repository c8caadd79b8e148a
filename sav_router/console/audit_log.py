"""The console's audit log: who answered, skipped, undid, promoted or rolled back what, and logins.

One JSON line per action in `console/audit.jsonl` (append-only, fsynced, mode
0600): ids, labels, versions and reasons typed by admins; never request text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sav_router.core.clock import utc_now
from sav_router.core.jsonio import append_jsonl
from sav_router.review.queue import private_file


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a log an older console created readable by others

    def record(self, user: str | None, action: str, **detail: Any) -> None:
        private_file(self.path)
        row = {"at": utc_now().isoformat(timespec="seconds"), "user": user, "action": action}
        append_jsonl(self.path, [row | {key: value for key, value in detail.items() if value is not None}])

