"""`sav-router quickstart`: train, evaluate and route the packaged sample data in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from sav_router.cli.options import EXIT_OK, log, show_progress

def _cmd_quickstart(args: argparse.Namespace) -> int:
    from sav_router.loop.quickstart import run_quickstart

    run_quickstart(Path(args.output), epochs=args.epochs, base_model=args.base_model, progress=show_progress(args), log=log)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    quickstart = sub.add_parser("quickstart", help="train, evaluate and route the packaged sample data")
    quickstart.add_argument("--output", "-o", default="sav-router-quickstart", metavar="DIR")
    quickstart.add_argument("--epochs", type=int, default=4)
    quickstart.add_argument("--base-model", help="HF model folder or id (default: packaged all-MiniLM-L6-v2)")
    quickstart.add_argument("--quiet", "-q", action="store_true")
    quickstart.set_defaults(func=_cmd_quickstart)
