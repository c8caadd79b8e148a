"""The one clock: aware UTC times and the compact stamps used in file and version names."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stamp(moment: datetime | None = None) -> str:
    """A sortable, path-safe stamp (20261204T201943123456Z)."""
    return (moment or utc_now()).strftime("%Y%m%dT%H%M%S%fZ")
