"""The `train` command: its options are TrainConfig's fields (one source of settings)."""

from __future__ import annotations

import argparse

from sav_router.cli.options import EXIT_OK, UsageError, add_columns, columns, log, probability, show_progress
from sav_router.training.config import TrainConfig

_PROBABILITIES = {"target_precision", "confidence"}


def _cmd_train(args: argparse.Namespace) -> int:
    from sav_router.training import sagemaker

    if not args.data:
        if sagemaker.in_training_job():
            return sagemaker.run_training_job()
        raise UsageError("train needs DATA files (or the SageMaker training contract: SM_MODEL_DIR / hyperparameters.json)")
    if args.output is None:
        raise UsageError("train needs --output MODEL_DIR")
    from sav_router.core.teams import load_teams
    from sav_router.training.build import train_bundle

    chosen = {option["dest"]: getattr(args, option["dest"]) for option in TrainConfig.cli_options()}
    # Options left out keep TrainConfig's defaults (one place for them).
    config = TrainConfig.from_mapping({key: value for key, value in chosen.items() if value is not None} | {"progress": show_progress(args)})
    train_bundle(args.data, args.output, config=config, columns=columns(args), teams=load_teams(args.teams),
                 synthetic_paths=args.synthetic or (), log=log)
    return EXIT_OK


# `recalibrate` options: the calibration knobs of TrainConfig (left out: the bundle's own settings)
RECALIBRATION_KNOBS = ("target_precision", "confidence", "margins", "tuning_share", "seed", "serving_backend")


def _cmd_recalibrate(args: argparse.Namespace) -> int:
    from sav_router.training.recalibrate import RecalibrationError, recalibrate_bundle

    given = {k: getattr(args, k) for k in RECALIBRATION_KNOBS if getattr(args, k, None) is not None}
    try:
        recalibrate_bundle(args.bundle, args.data, args.output, overrides=given, columns=columns(args), log=log)
    except RecalibrationError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune, calibrate and write a model bundle")
    train.add_argument("data", nargs="*", metavar="DATA", help="annotation files (.jsonl or .csv)")
    train.add_argument("--output", "-o", metavar="MODEL_DIR", help="bundle folder to write")
    train.add_argument("--teams", metavar="TEAMS.json", help="label -> team table (JSON or YAML); default identity")
    train.add_argument("--synthetic", nargs="*", metavar="FILE", help="expert-written examples, used for training only")
    for option in TrainConfig.cli_options():
        spec = dict(option)
        flags = spec.pop("flags")
        if spec["dest"] in _PROBABILITIES:
            spec["type"] = probability
        train.add_argument(*flags, **spec)
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_columns(train)
    train.set_defaults(func=_cmd_train)

    recal = sub.add_parser("recalibrate", help="recalibrate a bundle on a new annotated traffic sample, without fine-tuning")
    recal.add_argument("bundle", metavar="MODEL_DIR", help="the bundle to recalibrate (left untouched)")
    recal.add_argument("data", nargs="+", metavar="DATA", help="annotation files; the rows tagged 'calibrate' are the sample")
    recal.add_argument("--output", "-o", required=True, metavar="NEW_MODEL_DIR", help="new bundle folder to write")
    for option in TrainConfig.cli_options():
        if option["dest"] in RECALIBRATION_KNOBS:
            spec = dict(option)
            flags = spec.pop("flags")
            spec["help"] = spec["help"].split(" (default")[0] + " (default: the bundle's own setting)"
            if spec["dest"] in _PROBABILITIES:
                spec["type"] = probability
            recal.add_argument(*flags, **spec)
    add_columns(recal)
    recal.set_defaults(func=_cmd_recalibrate)
