"""The SageMaker training contract, so one `train` runs locally and as a job.

SageMaker mounts data channels at /opt/ml/input/data/<channel>/ (also given
as SM_CHANNEL_<NAME>), hyperparameters at /opt/ml/input/config/
hyperparameters.json (every value a string), expects the model in
/opt/ml/model (SM_MODEL_DIR) and, on failure, a reason in
/opt/ml/output/failure. `SAV_ROUTER_OPT_ML` moves the /opt/ml root (tests).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sav_router import env
from sav_router.data.annotations import DATA_SUFFIXES

TRAIN_CHANNEL = "train"
SYNTHETIC_CHANNEL = "synthetic"
TEAMS_CHANNEL = "teams"


def opt_ml_root() -> Path:
    return Path(os.environ.get(env.SAGEMAKER_PROGRAM_ROOT, "/opt/ml"))


def hyperparameters_path() -> Path:
    return opt_ml_root() / "input" / "config" / "hyperparameters.json"


def in_training_job() -> bool:
    """True when the SageMaker training contract is present."""
    return bool(os.environ.get(env.SM_MODEL_DIR)) or hyperparameters_path().is_file()


@dataclass
class JobPaths:
    model_dir: Path
    output_dir: Path
    failure_file: Path
    channels: dict[str, Path]


def job_paths() -> JobPaths:
    root = opt_ml_root()
    channels: dict[str, Path] = {}
    data_root = root / "input" / "data"
    if data_root.is_dir():
        channels.update({p.name: p for p in sorted(data_root.iterdir()) if p.is_dir()})
    for key, value in os.environ.items():
        if key.startswith(env.SM_CHANNEL_PREFIX) and value:
            channels[key[len(env.SM_CHANNEL_PREFIX) :].lower()] = Path(value)
    return JobPaths(
        model_dir=Path(os.environ.get(env.SM_MODEL_DIR) or root / "model"),
        output_dir=Path(os.environ.get(env.SM_OUTPUT_DATA_DIR) or root / "output" / "data"),
        failure_file=root / "output" / "failure",
        channels=channels,
    )


def read_hyperparameters() -> dict[str, Any]:
    """hyperparameters.json (or SM_HPS), with SageMaker's string values decoded."""
    raw: Mapping[str, Any] = {}
    path = hyperparameters_path()
    if path.is_file():
        raw = json.loads(path.read_text(encoding="utf-8"))
    elif os.environ.get(env.SM_HPS):
        raw = json.loads(os.environ[env.SM_HPS])
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # a plain string, e.g. a model id
        decoded[key.replace("-", "_")] = value
    return decoded


def channel_files(channel: Path) -> list[Path]:
    return sorted(p for p in channel.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)


def config_from_hyperparameters(hyperparameters: Mapping[str, Any]):
    """A TrainConfig from decoded hyperparameters; unknown keys are an error."""
    from sav_router.training.config import JOB_KEYS, TrainConfig

    return TrainConfig.from_mapping({"progress": False} | dict(hyperparameters), allowed_extra=JOB_KEYS, what="hyperparameters")  # job logs are not a terminal


def run_training_job() -> int:
    """Train from the mounted channels into the model dir; write the failure file on error."""
    from sav_router.training.build import train_bundle
    from sav_router.data.annotations import Columns
    from sav_router.core.teams import load_teams

    paths = job_paths()
    try:
        hyperparameters = read_hyperparameters()
        config = config_from_hyperparameters(hyperparameters)
        train_channel = paths.channels.get(TRAIN_CHANNEL)
        if train_channel is None:
            raise ValueError(f"no '{TRAIN_CHANNEL}' input channel (channels: {sorted(paths.channels) or 'none'})")
        data = channel_files(train_channel)
        if not data:
            raise ValueError(f"the '{TRAIN_CHANNEL}' channel holds no .jsonl or .csv file")
        synthetic = channel_files(paths.channels[SYNTHETIC_CHANNEL]) if SYNTHETIC_CHANNEL in paths.channels else []
        teams: dict[str, str | None] = {}
        if TEAMS_CHANNEL in paths.channels:
            team_files = sorted(p for p in paths.channels[TEAMS_CHANNEL].rglob("*") if p.suffix.lower() in (".json", ".yaml", ".yml"))
            if team_files:
                teams = load_teams(team_files[0])
        columns = Columns(text=hyperparameters.get("text_column", "text"), label=hyperparameters.get("label_column", "label"))
        train_bundle(data, paths.model_dir, config=config, columns=columns, teams=teams, synthetic_paths=synthetic)
        return 0
    except Exception as exc:  # noqa: BLE001 - the contract: any failure ends in the failure file
        reason = f"{type(exc).__name__}: {exc}"
        paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(reason[:1024], encoding="utf-8")
        traceback.print_exc(file=sys.stderr)
        return 1
