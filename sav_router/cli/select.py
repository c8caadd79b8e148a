"""`sav-router select`: rank unlabeled requests for annotation (uncertain, novel, disputed; diverse)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sav_router.cli.options import EXIT_OK, add_workspace, bundle_dir, read_request_rows
from sav_router.core.jsonio import write_jsonl_atomic

def _cmd_select(args: argparse.Namespace) -> int:
    from sav_router.loop.active_learning import select_batch
    from sav_router.model.router import Router

    if not 0 <= args.calibration_share < 1:
        raise ValueError("--calibration-share must be in [0, 1)")
    rows = [row for row in read_request_rows(args.pool) if row["text"].strip()]
    if not rows:
        raise ValueError(f"{args.pool}: no request to select from")
    router = Router.load(bundle_dir(args.model, args))
    candidate = Router.load(bundle_dir(args.candidate, args)) if args.candidate else None
    picked, randoms = select_batch(
        router, rows, args.k, calibration_share=args.calibration_share, candidate=candidate, max_similarity=args.max_similarity, seed=args.seed
    )
    output = Path(args.output)
    _write_selection(picked, output, args.format, router, "selected for annotation")
    if randoms:
        calibration_output = output.with_name(f"{output.stem}.calibrate{output.suffix}")
        _write_selection(randoms, calibration_output, args.format, router, "drawn at random: import with --as calibrate")
    return EXIT_OK


def _write_selection(picked: list[dict], output: Path, fmt: str, router, what: str) -> None:
    if fmt == "label-studio":
        from sav_router.data import labelstudio

        config = labelstudio.write_project(output, picked, router.labels, router.version)
        print(f"{len(picked)} Label Studio tasks with pre-annotations, {what} -> {output} (labeling config: {config})")
    else:
        write_jsonl_atomic(output, picked)
        print(f"{len(picked)} requests {what} -> {output}")


def register(sub: argparse._SubParsersAction) -> None:
    select = sub.add_parser("select", help="rank unlabeled requests for annotation (uncertain, novel, disputed; diverse)")
    select.add_argument("--model", required=True, metavar="DIR")
    select.add_argument("--pool", required=True, metavar="FILE")
    select.add_argument("-k", type=int, required=True, metavar="N")
    select.add_argument("--candidate", metavar="DIR", help="a candidate model: disagreement with --model becomes a signal")
    select.add_argument("--format", choices=["jsonl", "label-studio"], default="jsonl")
    select.add_argument("--max-similarity", type=float, default=0.92, help="cosine above which two picks count as near-duplicates")
    select.add_argument(
        "--calibration-share", type=float, default=0.0,
        help="share of the k requests drawn at random instead, written to OUTPUT's .calibrate file: annotate and "
        "import them with --as calibrate, so calibration stays unbiased (default 0)",
    )
    select.add_argument("--seed", type=int, default=13, help="seed of the random calibration draw")
    select.add_argument("--output", "-o", required=True, metavar="FILE")
    add_workspace(select)
    select.set_defaults(func=_cmd_select)

