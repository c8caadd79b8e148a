"""The artifacts bucket's prefix layout, in one place (infra, Lambdas and docs use it).

    annotations/   drops from the annotation platform and from reviewers (.jsonl / .csv)
    datasets/      curated datasets, one folder per pipeline run
    models/        training output (model.tar.gz) and models/manifests/<model_version>.json
    evaluations/   transform outputs, report.json, shadow comparison, per run
    traffic/       logged production requests and decisions (observer mode)
"""

from __future__ import annotations

from datetime import datetime

ANNOTATIONS = "annotations/"
DATASETS = "datasets/"
MODELS = "models/"
EVALUATIONS = "evaluations/"
TRAFFIC = "traffic/"
PREFIXES = (ANNOTATIONS, DATASETS, MODELS, EVALUATIONS, TRAFFIC)

TRAFFIC_REQUESTS = TRAFFIC + "requests/"
TRAFFIC_DECISIONS = TRAFFIC + "decisions/"
MANIFESTS = MODELS + "manifests/"
TRAINING_OUTPUT = MODELS + "training/"


def manifest_key(model_version: str) -> str:
    return f"{MANIFESTS}{model_version}.json"


def dataset_prefix(run_id: str) -> str:
    return f"{DATASETS}{run_id}/"


def evaluation_prefix(run_id: str) -> str:
    return f"{EVALUATIONS}{run_id}/"


def traffic_day(when: datetime) -> str:
    return f"dt={when.strftime('%Y-%m-%d')}/"


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
