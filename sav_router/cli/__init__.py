"""The `sav-router` command line: one module per area, each with `register(subparsers)`.

    options.py       what every command module shares: exit codes, option types, lookups
    training.py      train, recalibrate          evaluation.py  evaluate, predict
    registry.py      models, register, promote, rollback
    route.py         route                       compare.py     compare
    select.py        select                      importing.py   import
    review.py        review, audit               monitoring.py  monitor
    discovery.py     discover                    serving.py     serve, export-onnx
    doubts.py        doubts, settle
    console.py       console, console users      quickstart.py  quickstart

Command modules are thin: they parse, call the library (the same calls the console
makes) and print. Exit codes: 0 success, 1 unexpected failure, 2 bad usage or
unusable input (with a one-line reason on stderr). Building the parser imports
nothing heavy: each handler imports its machinery when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sav_router import __version__
from sav_router.cli import (
    compare,
    console,
    discovery,
    doubts,
    evaluation,
    importing,
    monitoring,
    quickstart,
    registry,
    review,
    route,
    select,
    serving,
    training,
)
from sav_router.cli.options import EXIT_USAGE

COMMAND_MODULES = (training, evaluation, registry, route, compare, select, importing, quickstart, review, serving,
                   monitoring, discovery, doubts, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sav-router", description="Precision-first router for after-sales requests.")
    parser.add_argument("--version", action="version", version=f"sav-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # usage errors, unusable input (NoValidDataError, BundleError, TeamsError, RegistryError: all ValueErrors),
    # bad values in configuration, a missing file
    except (ValueError, FileNotFoundError) as exc:
        print(f"sav-router: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a full disk, a permission: one line, nothing partial left where a reader takes it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sav-router: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sav-router: interrupted", file=sys.stderr)
        return 130
