"""The `evaluate` and `predict` commands (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from sav_router.cli.options import EXIT_OK, add_columns, add_runtime, columns, log


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sav_router.data.annotations import load_annotations, write_rejects
    from sav_router.evaluation.metrics import evaluate
    from sav_router.evaluation.report import write_report
    from sav_router.model.router import Router

    router = Router.load(args.model_dir, backend=args.backend, num_threads=args.threads)
    data = load_annotations(args.data, columns=columns(args))
    log(data.summary())
    if data.rejects:
        log(f"  rejected rows written to {write_rejects(data.rejects, Path(args.output) / 'rejects.jsonl')}")
    evaluation = evaluate(router, data.records)
    path = write_report(evaluation, args.output, plots=not args.no_plots)
    r = evaluation.report
    print(
        f"accuracy {r['accuracy']}  coverage {r['coverage']}  routed precision {r['routed_precision']} "
        f"(lower bound {r['routed_precision_lower_bound']})  out of scope {r['out_of_scope']['count']} "
        f"escalated {r['out_of_scope']['escalated_rate']}\nreport: {path}"
    )
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from sav_router.data.annotations import read_requests, write_rejects
    from sav_router.model.router import Router
    from sav_router.core.jsonio import dumps_line

    router = Router.load(args.model_dir, backend=args.backend, num_threads=args.threads)
    records, rejects = read_requests(args.data, columns=columns(args))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if rejects:
        path = write_rejects(rejects, output.with_suffix(".rejects.jsonl"))
        log(f"{len(rejects)} malformed rows not predicted (first: {rejects[0]}); written to {path}")
    counts: Counter[str] = Counter()
    with output.open("w", encoding="utf-8") as handle:
        for start in range(0, len(records), args.chunk_size):
            chunk = records[start : start + args.chunk_size]
            for row in router.decision_records(chunk):
                counts[row["decision"]] += 1
                handle.write(dumps_line(row))
    print(f"{len(records)} requests: {counts['route']} routed, {counts['escalate']} escalated -> {output}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="evaluate a bundle on labeled data (report.json, report.md, plots)")
    evaluate.add_argument("model_dir", metavar="MODEL_DIR")
    evaluate.add_argument("data", nargs="+", metavar="DATA")
    evaluate.add_argument("--output", "-o", required=True, metavar="REPORT_DIR")
    evaluate.add_argument("--no-plots", action="store_true")
    add_runtime(evaluate)
    add_columns(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = sub.add_parser("predict", help="decisions for a JSONL/CSV file of requests")
    predict.add_argument("model_dir", metavar="MODEL_DIR")
    predict.add_argument("data", metavar="DATA")
    predict.add_argument("--output", "-o", required=True, metavar="DECISIONS.jsonl")
    predict.add_argument("--chunk-size", type=int, default=1024)
    add_runtime(predict)
    add_columns(predict)
    predict.set_defaults(func=_cmd_predict)
