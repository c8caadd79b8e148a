"""The workspace's logged traffic as decision records for the monitor (and `discover`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sav_router.loop.workspace import Workspace, read_jsonl


def traffic_rows(workspace: Workspace, *, days: int | None = None) -> Iterator[dict[str, Any]]:
    """Logged requests, oldest day first (`traffic/<YYYY-MM-DD>.jsonl`); the last `days` files if given."""
    folder = workspace.path("traffic")
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if days is not None:
        files = files[-days:] if days > 0 else []
    for path in files:
        yield from read_jsonl(path)


def production_decisions(workspace: Workspace, *, days: int | None = None, model_version: str | None = None) -> list[dict[str, Any]]:
    """The production side of each logged request (optionally one model version only)."""
    out = []
    for row in traffic_rows(workspace, days=days):
        decision = row.get("production")
        if isinstance(decision, dict) and (model_version is None or decision.get("model_version") == model_version):
            out.append(decision)
    return out
