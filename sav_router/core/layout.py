"""The artifacts layout, in one place: the AWS bucket and the local workspace share it.

    annotations/   drops from the annotation platform and from reviewers (.jsonl / .csv)
    datasets/      curated datasets, one folder per pipeline run
    models/        bundles: training output (model.tar.gz) and models/manifests/<model_version>.json
                   in the bucket, one folder per model version in the workspace
    evaluations/   transform outputs, reports, shadow comparison, per run (or per version)
    traffic/       logged production requests and decisions (observer mode), one batch a file:
                   traffic/requests/dt=DAY/NAME and traffic/decisions/dt=DAY/NAME (same NAME),
                   in the workspace also traffic/observer/dt=DAY/NAME (the candidate's decisions)
    review/        workspace only: the local escalation queue (queue.jsonl) and reviewer progress
    registry.json  workspace only: which version is in production, and every promotion / rollback

Infra, the Lambdas, the workspace and the docs use these names; pure Python.
"""

from __future__ import annotations

from datetime import datetime

from sav_router.core.names import check_name

ANNOTATIONS = "annotations/"
DATASETS = "datasets/"
MODELS = "models/"
EVALUATIONS = "evaluations/"
TRAFFIC = "traffic/"
REVIEW = "review/"
PREFIXES = (ANNOTATIONS, DATASETS, MODELS, EVALUATIONS, TRAFFIC)
WORKSPACE_PREFIXES = (*PREFIXES, REVIEW)
REGISTRY = "registry.json"
REVIEW_QUEUE = "queue.jsonl"  # under review/
REVIEW_PROGRESS = "progress.jsonl"  # under review/

TRAFFIC_REQUESTS = TRAFFIC + "requests/"
TRAFFIC_DECISIONS = TRAFFIC + "decisions/"
TRAFFIC_OBSERVER = TRAFFIC + "observer/"
MANIFESTS = MODELS + "manifests/"
TRAINING_OUTPUT = MODELS + "training/"


def manifest_key(model_version: str) -> str:
    check_name(model_version, "model version")
    return f"{MANIFESTS}{model_version}.json"


def dataset_prefix(run_id: str) -> str:
    return f"{DATASETS}{run_id}/"


def evaluation_prefix(run_id: str) -> str:
    return f"{EVALUATIONS}{run_id}/"


def traffic_day(when: datetime) -> str:
    return f"dt={when.strftime('%Y-%m-%d')}/"


def traffic_keys(when: datetime, name: str) -> tuple[str, str]:
    """(requests key, decisions key) of one logged batch."""
    day = traffic_day(when)
    return f"{TRAFFIC_REQUESTS}{day}{name}", f"{TRAFFIC_DECISIONS}{day}{name}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def run_paths(bucket: str, run_id: str) -> dict[str, str]:
    """Every location of one pipeline run (keys, and s3:// URIs for SageMaker)."""
    data, evaluation = dataset_prefix(run_id), evaluation_prefix(run_id)
    keys = {
        "train_key": f"{data}train/annotations.jsonl",
        "teams_key": f"{data}teams/teams.json",
        "check_input_key": f"{data}check/requests.jsonl",
        "check_gold_key": f"{data}check/gold.json",
        "gold_by_id_key": f"{data}gold_by_id.json",
        "rejects_key": f"{data}rejects.jsonl",
        "shadow_input_key": f"{data}shadow/requests.jsonl",
        "shadow_production_key": f"{data}shadow/production.jsonl",
        "check_output_key": f"{evaluation}check/transform/requests.jsonl.out",
        "shadow_output_key": f"{evaluation}shadow/transform/requests.jsonl.out",
        "report_key": f"{evaluation}check/report.json",
        "comparison_key": f"{evaluation}shadow/comparison.json",
    }
    uris = {
        "train_uri": s3_uri(bucket, f"{data}train/"),
        "teams_uri": s3_uri(bucket, f"{data}teams/"),
        "check_input_uri": s3_uri(bucket, keys["check_input_key"]),
        "check_output_uri": s3_uri(bucket, f"{evaluation}check/transform/"),
        "shadow_input_uri": s3_uri(bucket, keys["shadow_input_key"]),
        "shadow_output_uri": s3_uri(bucket, f"{evaluation}shadow/transform/"),
        "model_output_uri": s3_uri(bucket, TRAINING_OUTPUT),
    }
    return keys | uris
