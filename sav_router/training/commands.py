"""The `train` command: its options are TrainConfig's fields (one source of settings)."""

from __future__ import annotations

import argparse

from sav_router.commandline import EXIT_OK, UsageError, add_columns, columns, log, probability, show_progress
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


def add_training_commands(sub) -> None:
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
