"""The console's own CSS and keyboard script, served by the app under /static (cacheable: no `no-store`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

PREFIX = "/static"


def mount(app: FastAPI) -> None:
    """A mount, not an APIRouter: FastAPI's include_router does not carry mounts."""
    folder = Path(str(resources.files("sav_router.console").joinpath("static")))
    app.mount(PREFIX, StaticFiles(directory=folder), name="static")
