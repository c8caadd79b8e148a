"""The `monitor` command: is the workspace's traffic still like the calibration sample?"""

from __future__ import annotations

import argparse
import json

from sav_router.cli.options import EXIT_OK, UsageError, add_workspace, positive_int, probability
from sav_router.core.defaults import DRIFT_ALPHA, DRIFT_DAYS_LOCAL

EXIT_ALARM = 3  # distinct from usage errors, so a cron job can alert on it


def add_monitor_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "monitor",
        help="test whether logged traffic still looks like the production model's calibration sample (drift alarm)",
    )
    add_workspace(parser)
    parser.add_argument("--model", metavar="DIR", help="bundle whose calibration sample is the reference (default: production)")
    parser.add_argument("--days", type=positive_int, default=DRIFT_DAYS_LOCAL, help=f"traffic days to read (default {DRIFT_DAYS_LOCAL})")
    parser.add_argument("--window", type=positive_int, metavar="N", help="only the last N requests (default: all read)")
    parser.add_argument("--alpha", type=probability, default=DRIFT_ALPHA, help=f"false-alarm rate per check (default {DRIFT_ALPHA})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--exit-code", action="store_true", help=f"exit {EXIT_ALARM} when the alarm fires")
    parser.set_defaults(func=_cmd_monitor)
    return parser


def _cmd_monitor(args: argparse.Namespace) -> int:
    from sav_router.core.bundle import read_manifest
    from sav_router.loop.workspace import Workspace
    from sav_router.monitoring.drift import check_drift
    from sav_router.monitoring.traffic import production_decisions

    workspace = Workspace(args.workspace)
    manifest = read_manifest(args.model or workspace.production_dir())
    reference = manifest.calibration.get("reference")
    if not reference or not reference.get("n"):
        raise UsageError(f"model {manifest.model_version} has no calibration reference (trained before the monitor existed): retrain it")
    decisions = production_decisions(workspace.root, days=args.days, model_version=manifest.model_version)
    if args.window:
        decisions = decisions[-args.window :]
    report = check_drift(decisions, reference, alpha=args.alpha)
    if args.json:
        print(json.dumps(report.to_dict() | {"model_version": manifest.model_version}, indent=2))
    else:
        print(report.line())
        if report.alarm:
            print(f"remedy: {report.remedy}")
    return EXIT_ALARM if report.alarm and args.exit_code else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    add_monitor_parser(sub)
