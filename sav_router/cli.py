"""The `sav-router` command line: assembles each capability's commands.

Exit codes: 0 success, 1 unexpected failure, 2 bad usage or unusable input
(with a one-line reason on stderr). Building the parser imports nothing heavy:
each capability's `commands.py` imports its machinery inside its handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sav_router import __version__
from sav_router.commandline import EXIT_USAGE, UsageError
from sav_router.console.commands import add_console_commands  # console, console users add
from sav_router.evaluation.commands import add_evaluation_commands  # evaluate, predict
from sav_router.discovery.commands import add_discovery_commands  # discover
from sav_router.loop.commands import add_loop_commands  # models, register, promote, rollback, route, compare, select, import, quickstart
from sav_router.monitoring.commands import add_monitoring_commands  # monitor
from sav_router.review.commands import add_review_commands  # review, audit
from sav_router.serving.commands import add_serving_commands  # serve, export-onnx
from sav_router.training.commands import add_training_commands  # train

COMMAND_GROUPS = (add_training_commands, add_evaluation_commands, add_loop_commands, add_review_commands, add_serving_commands,
                  add_monitoring_commands, add_discovery_commands, add_console_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sav-router", description="Precision-first router for after-sales requests.")
    parser.add_argument("--version", action="version", version=f"sav-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sav_router.core.bundle import BundleError
    from sav_router.core.teams import TeamsError
    from sav_router.data.annotations import NoValidDataError
    from sav_router.loop.workspace import RegistryError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, NoValidDataError, BundleError, TeamsError, RegistryError, FileNotFoundError) as exc:
        print(f"sav-router: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # bad values in input or configuration
        print(f"sav-router: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sav-router: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
