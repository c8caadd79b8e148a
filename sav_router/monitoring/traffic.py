"""The workspace's logged traffic as rows for the monitor (and `discover`).

Reads the one traffic format (`core.traffic`, laid out by `core.layout`):
`traffic/requests/dt=DAY/NAME` and `traffic/decisions/dt=DAY/NAME`, same name, same order.
A torn or unreadable line is skipped, never fatal (a crash mid-write is resumed by `route`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sav_router.core import layout
from sav_router.core.jsonio import positional_rows, read_text


def _lines(path: Path) -> list[dict[str, Any] | None]:
    return positional_rows(read_text(path))


def traffic_rows(root: Path, *, days: int | None = None) -> Iterator[dict[str, Any]]:
    """Logged requests, oldest day first, as {"id", "text", "received_at", "production"}; the last `days` days if given."""
    decisions_root = Path(root) / layout.TRAFFIC_DECISIONS
    requests_root = Path(root) / layout.TRAFFIC_REQUESTS
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


def production_decisions(root: Path, *, days: int | None = None, model_version: str | None = None) -> list[dict[str, Any]]:
    """The production side of each logged request (optionally one model version only)."""
    return [row["production"] for row in traffic_rows(root, days=days)
            if model_version is None or row["production"].get("model_version") == model_version]
