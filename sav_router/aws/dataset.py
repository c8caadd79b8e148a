"""Curate the training dataset of a run from every annotation under `annotations/`.

Validation and de-duplication are the core's (`load_annotations`): bad rows are
kept aside in `rejects.jsonl`, a text annotated with two labels is dropped.
The `train` channel gets all valid rows with their split tag (the trainer holds
`check` rows out); the `check` rows also become the Batch Transform input and
the gold labels of the evaluation step.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sav_router.core import layout
from sav_router.aws.s3io import list_keys, put_json, put_jsonl
from sav_router.data.annotations import CHECK, DATA_SUFFIXES, NoValidDataError, load_annotations


class DatasetError(ValueError):
    """The annotations cannot make a dataset the pipeline can train and gate on."""


def run_id_for(execution_name: str, prefix: str) -> str:
    """`<prefix>-<execution>-<hash>`: a valid SageMaker job name (with -check/-shadow) inside the IAM-scoped prefix."""
    stem = re.sub(r"[^A-Za-z0-9-]+", "-", execution_name).strip("-")[:24].strip("-") or "run"
    digest = hashlib.sha256(execution_name.encode()).hexdigest()[:6]
    return f"{prefix}-{stem}-{digest}"


def teams_table(team_labels: Mapping[str, list[str]]) -> dict[str, str]:
    """label -> team from the deployment's `{team: [labels]}` configuration."""
    return {label: team for team, labels in team_labels.items() for label in labels}


def build_dataset(s3: Any, bucket: str, execution_name: str, *, prefix: str, team_labels: Mapping[str, list[str]]) -> dict[str, Any]:
    run_id = run_id_for(execution_name, prefix)
    paths = layout.run_paths(bucket, run_id)
    objects = [o for o in list_keys(s3, bucket, layout.ANNOTATIONS) if o["Key"].lower().endswith(DATA_SUFFIXES)]
    if not objects:
        raise DatasetError(f"no annotation file under s3://{bucket}/{layout.ANNOTATIONS}")
    with tempfile.TemporaryDirectory() as folder:
        files, keys = [], {}
        for index, obj in enumerate(sorted(objects, key=lambda o: o["Key"])):
            local = Path(folder) / f"{index:05d}-{Path(obj['Key']).name}"
            s3.download_file(bucket, obj["Key"], str(local))
            files.append(local)
            keys[str(local)] = obj["Key"]
        try:
            data = load_annotations(files)
        except NoValidDataError as exc:
            raise DatasetError(str(exc)) from exc
    check = data.by_split(CHECK)
    if not check:
        raise DatasetError("no annotation tagged split=check: the quality gate needs held-out rows")
    check_ids = [r.id or f"check-{i}" for i, r in enumerate(check)]
    put_jsonl(s3, bucket, paths["train_key"], ({"id": r.id, "text": r.text, "label": r.label, "split": r.split} for r in data.records))
    put_json(s3, bucket, paths["teams_key"], teams_table(team_labels))
    put_jsonl(s3, bucket, paths["check_input_key"], ({"id": i, "text": r.text} for i, r in zip(check_ids, check, strict=True)))
    put_json(s3, bucket, paths["check_gold_key"], {i: r.label for i, r in zip(check_ids, check, strict=True)})
    put_json(s3, bucket, paths["gold_by_id_key"], {r.id: r.label for r in data.records if r.id})
    put_jsonl(s3, bucket, paths["rejects_key"], (asdict(r) | {"source": keys.get(r.source, r.source)} for r in data.rejects))
    return {
        "run_id": run_id,
        "rows": len(data.records),
        "check_rows": len(check),
        "rejected_rows": len(data.rejects),
        "files": len(objects),
        **paths,
    }
