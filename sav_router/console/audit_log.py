"""The console's audit log: who answered, skipped, undid, promoted or rolled back what, and logins.

One JSON line per action in `console/audit.jsonl` (append-only, fsynced, mode
0600): ids, labels, versions and reasons typed by admins; never request text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sav_router.core.clock import utc_now
from sav_router.core.jsonio import append_jsonl


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, user: str | None, action: str, **detail: Any) -> None:
        private_file(self.path)
        row = {"at": utc_now().isoformat(timespec="seconds"), "user": user, "action": action}
        append_jsonl(self.path, [row | {key: value for key, value in detail.items() if value is not None}])


def private_file(path: Path) -> Path:
    """Create `path` (and its folder) readable by its owner only, if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    return path
