"""Moved to `sav_router.core.layout` (shared with the local workspace); kept so older imports keep working."""

from sav_router.core.layout import *  # noqa: F401,F403
