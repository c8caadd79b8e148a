"""What every command module shares: exit codes, usage errors, option types, common options and lookups.

Pure standard library: building the parser must stay cheap (`sav-router review --help`
loads no numpy, torch or transformers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_USAGE = 2
WORKSPACE_HELP = "workspace folder (default: $SAV_ROUTER_WORKSPACE or ./sav-router-workspace)"


class UsageError(ValueError):
    """Bad usage or unusable input: exit 2 with this one-line message."""


def log(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries results only."""
    print(message, file=sys.stderr, flush=True)


def share(text: str) -> float:
    """A share in [0, 1] (0: none, 1: all)."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_columns(parser: argparse.ArgumentParser, *, label: bool = True) -> None:
    parser.add_argument("--text-column", default="text", help="field holding the request text (default: text)")
    if label:
        parser.add_argument("--label-column", default="label", help="field holding the label (Banking77: category)")
    parser.add_argument("--id-column", default="id", help="field holding the request id (default: id)")


def columns(args: argparse.Namespace):
    from sav_router.data.annotations import Columns

    return Columns(text=args.text_column, label=getattr(args, "label_column", "label"), id=args.id_column)


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", "-w", metavar="DIR", help=WORKSPACE_HELP)


def add_annotation_prefix(parser: argparse.ArgumentParser) -> None:
    from sav_router.core.layout import ANNOTATIONS

    parser.add_argument("--prefix", default=ANNOTATIONS, help=f"annotation prefix in the bucket (default: {ANNOTATIONS})")


def add_runtime(parser: argparse.ArgumentParser) -> None:
    from sav_router.model.backends import BACKENDS, DEFAULT_BACKEND  # names only: no torch

    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help=f"inference backend (default {DEFAULT_BACKEND})")
    parser.add_argument("--threads", type=int, help="torch threads (default: usable cores)")


def show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def workspace_of(args: argparse.Namespace):
    from sav_router.loop.workspace import Workspace

    return Workspace(args.workspace)


def bundle_dir(value: str | None, args: argparse.Namespace) -> Path:
    """A bundle folder, or a version registered in the workspace; default: production."""
    from sav_router.core.bundle import MANIFEST_NAME

    workspace = workspace_of(args)
    if value is None:
        return workspace.production_dir()
    path = Path(value)
    if (path / MANIFEST_NAME).is_file():
        return path
    return workspace.model_dir(value)


def read_request_rows(path: str) -> list[dict]:
    """Requests (labels optional) of a JSONL/CSV file as {"id", "text", "label"}; malformed rows reported on stderr."""
    from sav_router.data.annotations import read_rows

    records, rejects = read_rows(path, require_label=False, allow_empty_text=True)
    for reject in rejects:
        log(f"skipped: {reject}")
    return [{"id": r.id if r.id is not None else f"line-{r.line}", "text": r.text, "label": r.label} for r in records]
