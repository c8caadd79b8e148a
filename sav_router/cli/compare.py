"""`sav-router compare`: a candidate and production on the same requests; the report `promote` checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from sav_router.cli.options import EXIT_OK, add_workspace, bundle_dir, probability, read_request_rows, workspace_of

def _cmd_compare(args: argparse.Namespace) -> int:
    from sav_router.loop.comparison import Gate
    from sav_router.loop.model_comparison import compare_models

    production_dir, candidate_dir = bundle_dir(args.production, args), bundle_dir(args.candidate, args)
    rows = read_request_rows(args.traffic)
    if not rows:
        raise ValueError(f"{args.traffic}: no request to compare on")
    gold = {row["id"]: row["label"] for row in rows if row.get("label")}
    if args.labels:
        gold.update({row["id"]: row["label"] for row in read_request_rows(args.labels) if row.get("label")})
    gate = Gate(precision_tolerance=args.precision_tolerance, coverage_tolerance=args.coverage_tolerance, min_labeled=args.min_labeled,
                max_label_error_rate=args.max_label_error_rate)
    report, outputs = compare_models(production_dir, candidate_dir, rows, gold, gate=gate, workspace=workspace_of(args), output=Path(args.output))
    print(f"verdict: {'PASS' if report['gate']['passed'] else 'FAIL'} — {report['gate']['reason']}\nreport: {outputs[0] / 'comparison.md'}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser("compare", help="compare a candidate with production on the same requests")
    compare.add_argument("--production", required=True, metavar="DIR")
    compare.add_argument("--candidate", required=True, metavar="DIR")
    compare.add_argument("traffic", metavar="TRAFFIC", help="requests (JSONL/CSV, e.g. traffic/*.jsonl or a check set)")
    compare.add_argument("labels", nargs="?", metavar="LABELS", help="human labels by id (JSONL/CSV)")
    compare.add_argument("--output", "-o", required=True, metavar="REPORT_DIR")
    compare.add_argument("--precision-tolerance", type=float, default=0.01)
    compare.add_argument("--coverage-tolerance", type=float, default=0.0)
    compare.add_argument("--min-labeled", type=int, default=50)
    compare.add_argument("--max-label-error-rate", type=probability, metavar="RATE",
                         help="fail the gate when the candidate's calibrate rows' estimated label-error rate (`doubts`) is above RATE")
    add_workspace(compare)
    compare.set_defaults(func=_cmd_compare)
