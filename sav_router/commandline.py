"""What every capability's `commands.py` shares: exit codes, usage errors, common options.

Pure standard library: building the parser must stay cheap (`sav-router review --help`
loads no numpy, torch or transformers).
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_USAGE = 2
WORKSPACE_HELP = "workspace folder (default: $SAV_ROUTER_WORKSPACE or ./sav-router-workspace)"


class UsageError(ValueError):
    """Bad usage or unusable input: exit 2 with this one-line message."""


def log(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries results only."""
    print(message, file=sys.stderr, flush=True)


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


def add_runtime(parser: argparse.ArgumentParser) -> None:
    from sav_router.model.backends import BACKENDS, DEFAULT_BACKEND  # names only: no torch

    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help=f"inference backend (default {DEFAULT_BACKEND})")
    parser.add_argument("--threads", type=int, help="torch threads (default: usable cores)")


def show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()
