"""The `sav-router` command line.

Exit codes: 0 success, 1 unexpected failure, 2 bad usage or unusable input
(with a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sav_router import __version__
from sav_router.policy import decision_record  # noqa: F401 - re-exported: the per-request output format

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad usage or unusable input: exit 2 with this one-line message."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return value


def _add_columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-column", default="text", help="field holding the request text (default: text)")
    parser.add_argument("--label-column", default="label", help="field holding the label (Banking77: category)")
    parser.add_argument("--id-column", default="id", help="field holding the request id (default: id)")


def _columns(args: argparse.Namespace):
    from sav_router.data.annotations import Columns

    return Columns(text=args.text_column, label=args.label_column, id=args.id_column)


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


# -- train -------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from sav_router import sagemaker

    if not args.data:
        if sagemaker.in_training_job():
            return sagemaker.run_training_job()
        raise UsageError("train needs DATA files (or the SageMaker training contract: SM_MODEL_DIR / hyperparameters.json)")
    if args.output is None:
        raise UsageError("train needs --output MODEL_DIR")
    from sav_router.build import TrainConfig, train_bundle
    from sav_router.teams import load_teams

    chosen = {
        "base_model": args.base_model,
        "max_length": args.max_length,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "head_learning_rate": args.head_learning_rate,
        "head": args.head,
        "seed": args.seed,
        "target_precision": args.target_precision,
        "confidence": args.confidence,
        "margins": tuple(args.margin) if args.margin else None,
        "min_count": args.min_count,
        "class_weighted": args.class_weighted or None,
        "calibration_share": args.calibration_share,
        "validation_share": args.validation_share,
        "ood_quantile": args.ood_quantile,
        "ood_method": args.ood_method,
        "ood_k": args.ood_k,
        "num_threads": args.threads,
        "device": args.device,
        "max_steps": args.max_steps,
    }
    # Options left out keep TrainConfig's defaults (one place for them).
    config = TrainConfig(**{key: value for key, value in chosen.items() if value is not None}, progress=_progress(args))
    train_bundle(
        args.data,
        args.output,
        config=config,
        columns=_columns(args),
        teams=load_teams(args.teams),
        synthetic_paths=args.synthetic or (),
        log=_log,
    )
    return EXIT_OK


# -- evaluate ----------------------------------------------------------------
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sav_router.data.annotations import load_annotations, write_rejects
    from sav_router.evaluation import evaluate, write_report
    from sav_router.router import Router

    router = Router.load(args.model_dir, backend=args.backend, num_threads=args.threads)
    data = load_annotations(args.data, columns=_columns(args))
    _log(data.summary())
    if data.rejects:
        _log(f"  rejected rows written to {write_rejects(data.rejects, Path(args.output) / 'rejects.jsonl')}")
    evaluation = evaluate(router, data.records)
    path = write_report(evaluation, args.output, plots=not args.no_plots)
    r = evaluation.report
    print(
        f"accuracy {r['accuracy']}  coverage {r['coverage']}  routed precision {r['routed_precision']} "
        f"(lower bound {r['routed_precision_lower_bound']})  out of scope {r['out_of_scope']['count']} "
        f"escalated {r['out_of_scope']['escalated_rate']}\nreport: {path}"
    )
    return EXIT_OK


# -- predict -----------------------------------------------------------------
def _cmd_predict(args: argparse.Namespace) -> int:
    from collections import Counter

    from sav_router.data.annotations import read_requests, write_rejects
    from sav_router.router import Router

    router = Router.load(args.model_dir, backend=args.backend, num_threads=args.threads)
    records, rejects = read_requests(args.data, columns=_columns(args))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if rejects:
        path = write_rejects(rejects, output.with_suffix(".rejects.jsonl"))
        _log(f"{len(rejects)} malformed rows not predicted (first: {rejects[0]}); written to {path}")
    counts: Counter[str] = Counter()
    with output.open("w", encoding="utf-8") as handle:
        for start in range(0, len(records), args.chunk_size):
            chunk = records[start : start + args.chunk_size]
            decisions, scores = router.predict([r.text for r in chunk])
            for record, decision, label_scores in zip(chunk, decisions, scores):
                counts[decision.decision] += 1
                handle.write(json.dumps(decision_record(record.id, decision, label_scores), ensure_ascii=False) + "\n")
    print(f"{len(records)} requests: {counts['route']} routed, {counts['escalate']} escalated -> {output}")
    return EXIT_OK


# -- quickstart --------------------------------------------------------------
def _cmd_quickstart(args: argparse.Namespace) -> int:
    from sav_router.quickstart import run_quickstart

    run_quickstart(Path(args.output), epochs=args.epochs, base_model=args.base_model, progress=_progress(args), log=_log)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sav-router", description="Precision-first router for after-sales requests.")
    parser.add_argument("--version", action="version", version=f"sav-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="fine-tune, calibrate and write a model bundle")
    train.add_argument("data", nargs="*", metavar="DATA", help="annotation files (.jsonl or .csv)")
    train.add_argument("--output", "-o", metavar="MODEL_DIR", help="bundle folder to write")
    train.add_argument("--base-model", help="HF model folder or id (default: packaged all-MiniLM-L6-v2)")
    from sav_router.build import TrainConfig
    from sav_router.ood import DETECTORS

    defaults = TrainConfig()
    train.add_argument("--target-precision", type=_probability, help=f"routed precision to guarantee (default {defaults.target_precision})")
    train.add_argument("--confidence", type=_probability, help=f"confidence of that guarantee (default {defaults.confidence})")
    train.add_argument("--teams", metavar="TEAMS.json", help="label -> team table (JSON or YAML); default identity")
    train.add_argument("--synthetic", nargs="*", metavar="FILE", help="expert-written examples, used for training only")
    train.add_argument("--epochs", type=int, help=f"fine-tuning epochs, early-stopped on validation (default {defaults.epochs})")
    train.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    train.add_argument("--learning-rate", type=float, help=f"encoder learning rate (default {defaults.learning_rate})")
    train.add_argument("--head-learning-rate", type=float, help=f"classification head learning rate (default {defaults.head_learning_rate})")
    train.add_argument("--head", choices=("linear", "cosine"), help=f"head trained with the encoder (default {defaults.head}; both are saved as a linear head)")
    train.add_argument("--max-length", type=int, help=f"tokens kept per request (default {defaults.max_length})")
    train.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    train.add_argument("--margin", type=float, action="append", help="minimum top-1 minus top-2 gap (default 0.1); repeat to let calibration pick one (Bonferroni-corrected)")
    train.add_argument("--min-count", type=int, help=f"labels under this many training rows get noisy copies (default {defaults.min_count})")
    train.add_argument("--class-weighted", action="store_true", help="class-weighted loss")
    train.add_argument("--calibration-share", type=float, help=f"share of teach rows held out to calibrate (default {defaults.calibration_share})")
    train.add_argument("--validation-share", type=float, help=f"share held out for early stopping (default {defaults.validation_share})")
    train.add_argument("--ood-quantile", type=float, help=f"in-distribution quantile of the OOD threshold (default {defaults.ood_quantile})")
    train.add_argument("--ood-method", choices=sorted(DETECTORS), help=f"out-of-distribution score (default {defaults.ood_method})")
    train.add_argument("--ood-k", type=int, help=f"neighbour rank of the knn score (default {defaults.ood_k})")
    train.add_argument("--threads", type=int, help="torch threads (default: usable cores)")
    train.add_argument("--device", help="torch device for fine-tuning: cpu, cuda, cuda:N (default: $SAV_ROUTER_DEVICE, else cuda when available)")
    train.add_argument("--max-steps", type=int, help="stop fine-tuning after this many steps (smoke runs)")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    _add_columns(train)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a bundle on labeled data (report.json, report.md, plots)")
    evaluate.add_argument("model_dir", metavar="MODEL_DIR")
    evaluate.add_argument("data", nargs="+", metavar="DATA")
    evaluate.add_argument("--output", "-o", required=True, metavar="REPORT_DIR")
    evaluate.add_argument("--no-plots", action="store_true")
    _add_runtime(evaluate)
    _add_columns(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = sub.add_parser("predict", help="decisions for a JSONL/CSV file of requests")
    predict.add_argument("model_dir", metavar="MODEL_DIR")
    predict.add_argument("data", metavar="DATA")
    predict.add_argument("--output", "-o", required=True, metavar="DECISIONS.jsonl")
    predict.add_argument("--chunk-size", type=int, default=1024)
    _add_runtime(predict)
    _add_columns(predict)
    predict.set_defaults(func=_cmd_predict)

    quickstart = sub.add_parser("quickstart", help="train, evaluate and route the packaged sample data")
    quickstart.add_argument("--output", "-o", default="sav-router-quickstart", metavar="DIR")
    quickstart.add_argument("--epochs", type=int, default=4)
    quickstart.add_argument("--base-model", help="HF model folder or id (default: packaged all-MiniLM-L6-v2)")
    quickstart.add_argument("--quiet", "-q", action="store_true")
    quickstart.set_defaults(func=_cmd_quickstart)

    from sav_router.serving.commands import add_serving_commands  # serve, export-onnx

    add_serving_commands(sub)

    from sav_router.loop_cli import add_loop_commands  # models, register, promote, rollback, route, compare, select

    add_loop_commands(sub)

    from sav_router.importing import add_import_parser
    from sav_router.review.audit import add_audit_parser
    from sav_router.review.session import add_review_parser

    add_import_parser(sub)
    add_review_parser(sub)
    add_audit_parser(sub)

    from sav_router.console.commands import add_console_commands  # console, console users add

    add_console_commands(sub)
    return parser


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument("--threads", type=int, help="torch threads (default: usable cores)")


def main(argv: Sequence[str] | None = None) -> int:
    from sav_router.bundle import BundleError
    from sav_router.data.annotations import NoValidDataError
    from sav_router.teams import TeamsError
    from sav_router.workspace import RegistryError

    parser = build_parser()
    args = parser.parse_args(argv)
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
