"""The workspace's logged traffic as rows for the monitor (and `discover`).

Reads the one traffic format (`core.traffic`, laid out by `core.layout`):
`traffic/requests/dt=DAY/NAME` and `traffic/decisions/dt=DAY/NAME`, same name, same order.
A torn or unreadable line is skipped, never fatal (a crash mid-write is resumed by `route`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sav_router.core import layout
from sav_router.loop.workspace import Workspace


def _lines(path: Path) -> list[dict[str, Any] | None]:
    rows: list[dict[str, Any] | None] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        rows.append(row if isinstance(row, dict) else None)
    return rows


def traffic_rows(workspace: Workspace, *, days: int | None = None) -> Iterator[dict[str, Any]]:
    """Logged requests, oldest day first, as {"id", "text", "received_at", "production"}; the last `days` days if given."""
    decisions_root = workspace.root / layout.TRAFFIC_DECISIONS
    requests_root = workspace.root / layout.TRAFFIC_REQUESTS
    day_folders = sorted(p for p in decisions_root.glob("dt=*") if p.is_dir()) if decisions_root.is_dir() else []
    if days is not None:
        day_folders = day_folders[-days:] if days > 0 else []
    for day in day_folders:
        for decisions_path in sorted(day.glob("*.jsonl")):
            requests = _lines(requests_root / day.name / decisions_path.name)
            for i, decision in enumerate(_lines(decisions_path)):
                if decision is None:
                    continue
                request = requests[i] if i < len(requests) and requests[i] is not None else {}
                yield {"id": decision.get("id"), "text": request.get("text"), "received_at": request.get("received_at"), "production": decision}


def production_decisions(workspace: Workspace, *, days: int | None = None, model_version: str | None = None) -> list[dict[str, Any]]:
    """The production side of each logged request (optionally one model version only)."""
    return [row["production"] for row in traffic_rows(workspace, days=days)
            if model_version is None or row["production"].get("model_version") == model_version]
