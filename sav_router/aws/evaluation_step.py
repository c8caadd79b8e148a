"""The pipeline's evaluation step: the core evaluation code on Batch Transform output.

The transform wrote one decision record per `check` request (calibrated
`scores` for every label); the core `summarize` turns them with the gold labels
into `report.json`. It also publishes the candidate's bundle manifest (read from
model.tar.gz) at `layout.manifest_key(model_version)`, where the routing
Lambda finds the thresholds of the model version that scored a request.

numpy and the core evaluation module are imported inside `evaluate_check`: this
module is only used by the evaluation Lambda, which bundles them.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

from sav_router.core import layout
from sav_router.aws.gate import quality_gate
from sav_router.aws.s3io import get_json, get_jsonl, put_json
from sav_router.core.bundle import MANIFEST_NAME, Manifest
from sav_router.core.policy import MODEL_UNAVAILABLE, Decision, escalation


class EvaluationError(ValueError):
    """The transform output cannot be evaluated (missing manifest, no prediction)."""


def read_manifest_from_model(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """The bundle manifest (`MANIFEST_NAME`) out of a model.tar.gz, streamed (the weights are never held in memory)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.rsplit("/", 1)[-1] == MANIFEST_NAME and member.name.count("/") <= 1:
                return json.loads(archive.extractfile(member).read())
    raise EvaluationError(f"s3://{bucket}/{key} holds no {MANIFEST_NAME}: not a sav-router bundle")


def _rows(records: Sequence[Mapping[str, Any]], gold: Mapping[str, str], labels: Sequence[str]):
    """Probabilities, OOD scores, decisions and gold labels aligned on the gold ids."""
    by_id = {str(r.get("id")): r for r in records}
    probabilities, ood, decisions, gold_labels, errors = [], [], [], [], 0
    uniform = [1.0 / len(labels)] * len(labels)
    for request_id, label in gold.items():
        record = by_id.get(request_id)
        if record is None or "error" in record or not isinstance(record.get("scores"), Mapping):
            errors += 1  # counts as an escalation: it would not have been routed
            probabilities.append(uniform)
            ood.append(None)
            decisions.append(escalation(MODEL_UNAVAILABLE))
        else:
            row = [max(float(record["scores"].get(name, 0.0)), 1e-12) for name in labels]
            total = sum(row)
            probabilities.append([p / total for p in row])
            ood.append(record.get("ood_score"))
            decisions.append(Decision.from_dict(record))
        gold_labels.append(label)
    return probabilities, ood, decisions, gold_labels, errors


def summarize_records(records: Sequence[Mapping[str, Any]], gold: Mapping[str, str], manifest: Manifest) -> dict[str, Any]:
    import numpy as np

    from sav_router.evaluation.metrics import summarize
    from sav_router.model.router import Scored

    probabilities, ood, decisions, gold_labels, errors = _rows(records, gold, manifest.labels)
    probs = np.asarray(probabilities, dtype=np.float64)
    # T * log(p) are logits up to a per-row constant: softmax at T=1 gives back the
    # uncalibrated probabilities, so both ECE figures are those of the real model.
    logits = manifest.temperature * np.log(probs)
    ood_scores = None if any(v is None for v in ood) else np.asarray(ood, dtype=np.float64)
    evaluation = summarize(
        Scored(probabilities=probs, ood_scores=ood_scores, logits=logits),
        decisions,
        gold_labels,
        labels=manifest.labels,
        policy=manifest.policy,
        temperature=manifest.temperature,
        confidence_level=float(manifest.calibration.get("confidence", 0.95)),
        model_version=manifest.model_version,
    )
    report = evaluation.report
    report["target_precision"] = manifest.calibration.get("target_precision")
    report["confidence_level"] = manifest.calibration.get("confidence")
    report["prediction_errors"] = errors
    report["source"] = "batch-transform"
    return report


def evaluate_check(
    s3: Any,
    bucket: str,
    *,
    run_id: str,
    model_artifacts_uri: str,
    target_precision: float,
    min_coverage: float,
) -> dict[str, Any]:
    paths = layout.run_paths(bucket, run_id)
    model_bucket, model_key = layout.split_s3_uri(model_artifacts_uri)
    manifest = Manifest.from_dict(read_manifest_from_model(s3, model_bucket, model_key), source=model_artifacts_uri)
    put_json(s3, bucket, layout.manifest_key(manifest.model_version), manifest.to_dict())
    records = get_jsonl(s3, bucket, paths["check_output_key"])
    gold = get_json(s3, bucket, paths["check_gold_key"])
    if not records:
        raise EvaluationError(f"the check transform wrote no prediction to {paths['check_output_key']}")
    report = summarize_records(records, gold, manifest)
    put_json(s3, bucket, paths["report_key"], report)
    gate = quality_gate(report, target_precision=target_precision, min_coverage=min_coverage)
    return {
        "model_version": manifest.model_version,
        "manifest_key": layout.manifest_key(manifest.model_version),
        "report_uri": layout.s3_uri(bucket, paths["report_key"]),
        "gate": gate,
        "metrics": {k: report[k] for k in ("n_examples", "coverage", "routed_precision", "routed_precision_lower_bound", "accuracy")},
    }
