"""Live routed precision, from audit samples answered by reviewers.

An audit sample is a confidently routed request also sent for review; its
answer is a `check` annotation with source `audit` and the routed label kept
as `model_label`. Precision = share of audited requests whose routed label the
reviewer confirmed, with an exact (Clopper-Pearson) interval.

The estimate describes routed traffic only as far as audit samples are drawn
uniformly from it (the `route` command and the routing Lambda sample at random).

Pure Python: no numpy or scipy, so it runs anywhere the CLI does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sav_router.core import layout
from sav_router.core.jsonio import lenient_rows, read_text
from sav_router.core.labels import out_of_scope_label
from sav_router.core.stats import CONFIDENCE, clopper_pearson
from sav_router.review.items import AUDIT_SOURCE
from sav_router.loop.workspace import Workspace


# -- audit answers -------------------------------------------------------------
def _is_audit_answer(row: Mapping[str, Any]) -> bool:
    return (
        row.get("source") == AUDIT_SOURCE
        and isinstance(row.get("label"), str) and row["label"].strip() != ""
        and isinstance(row.get("model_label"), str) and row["model_label"].strip() != ""
    )


def latest_audit_answers(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One answer per request id (the last one read wins), audit rows only."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if _is_audit_answer(row):
            by_id[str(row.get("id"))] = row
    return list(by_id.values())


def workspace_audit_rows(workspace: Workspace) -> list[Mapping[str, Any]]:
    folder = workspace.path("annotations")
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []:  # stamped names: oldest first
        if not path.name.endswith(".rejects.jsonl"):
            rows.extend(lenient_rows(read_text(path)))
    return latest_audit_answers(rows)


def s3_audit_rows(s3: Any, bucket: str, prefix: str = layout.ANNOTATIONS) -> list[Mapping[str, Any]]:
    """Audit answers the SQS reviewers wrote under `<prefix>review/`."""
    from sav_router.aws.s3io import get_jsonl_lenient, list_keys

    objects = sorted(list_keys(s3, bucket, f"{prefix}review/{AUDIT_SOURCE}-"), key=lambda o: (o["LastModified"], o["Key"]))
    rows: list[dict[str, Any]] = []
    for obj in objects:
        rows.extend(get_jsonl_lenient(s3, bucket, obj["Key"]))
    return latest_audit_answers(rows)


def _estimate(answers: list[Mapping[str, Any]], confidence: float) -> dict[str, Any]:
    trials = len(answers)
    # An audited request answered out of scope was routed but should not have been: a misroute.
    reserved = out_of_scope_label()
    out_of_scope = sum(1 for row in answers if row["label"].strip() == reserved)
    correct = sum(1 for row in answers if row["label"].strip() == row["model_label"].strip() and row["label"].strip() != reserved)
    if not trials:
        return {"audited": 0, "correct": 0, "precision": None, "interval": None, "out_of_scope": 0}
    lower, upper = clopper_pearson(correct, trials, confidence)
    return {"audited": trials, "correct": correct, "precision": round(correct / trials, 4), "interval": [round(lower, 4), round(upper, 4)],
            "out_of_scope": out_of_scope}


def estimate_precision(answers: Iterable[Mapping[str, Any]], *, confidence: float = CONFIDENCE) -> dict[str, Any]:
    answers = list(answers)
    by_version: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in answers:
        by_version[str(row.get("model_version") or "unknown")].append(row)
    return {
        **_estimate(answers, confidence),
        "confidence": confidence,
        "method": "clopper-pearson",
        "by_model_version": {version: _estimate(rows, confidence) for version, rows in sorted(by_version.items())},
    }


def audit_estimate(workspace: Workspace, *, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Live routed precision from the workspace's audit answers, with its interval."""
    return estimate_precision(workspace_audit_rows(workspace), confidence=confidence)


def format_estimate(report: Mapping[str, Any]) -> str:
    if not report["audited"]:
        return "no audit answer yet: route with an audit share, then answer the audit samples with `sav-router review`"
    level = f"{report['confidence']:.0%}"

    def line(name: str, part: Mapping[str, Any]) -> str:
        low, high = part["interval"]
        oos = f"; {part['out_of_scope']} answered out of scope (misroutes)" if part.get("out_of_scope") else ""
        return f"{name}: {part['precision']:.3f} [{low:.3f}, {high:.3f}] ({part['correct']}/{part['audited']} routed labels confirmed{oos})"

    lines = [line(f"live routed precision ({level} Clopper-Pearson)", report)]
    lines += [line(f"  {version}", part) for version, part in report["by_model_version"].items()]
    return "\n".join(lines)
