"""Where the console reads and writes: the local workspace, or the AWS review queue and artifacts bucket.

Both answer the same questions (queues, labels, models, reports, traffic,
audit answers) and the local one also the admin actions; every rule lives in
the code the CLI runs (`Workspace.promote`, `compare_models`, `select_batch`),
the console only calls it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sav_router.console.desks import LocalDesk, SqsDesk
from sav_router.core.clock import utc_now
from sav_router.core.defaults import REVIEW_LEASE_SECONDS
from sav_router.core.jsonio import append_jsonl, lenient_rows, read_text
from sav_router.core.layout import ANNOTATIONS
from sav_router.loop.workspace import Workspace
from sav_router.review.queue import PROGRESS_FILE, QUEUE_FILE
from sav_router.review.recheck import RECHECK_PROGRESS, RECHECK_QUEUE, RecheckQueue

log = logging.getLogger("sav_router.console")

ESCALATIONS = "escalations"
BATCH = "batch"
BATCH_FILE = "batch.jsonl"
BATCH_PROGRESS = "batch-progress.jsonl"
RECHECK = "recheck"  # doubted annotations answered blind (`sav-router doubts --format review-queue`), local workspace only


RECHECK_ON_AWS = ("The re-check queue is not available on AWS: it works on a local workspace (`sav-router doubts --format review-queue`, "
                  "then the console's Re-check desk). On AWS, send the doubts to Label Studio (`sav-router doubts --format label-studio`).")


class ActionUnavailable(RuntimeError):
    """An action this source cannot do (said on the page)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class LocalSource:
    kind = "local"

    def __init__(self, workspace: Workspace, *, lease_seconds: float = REVIEW_LEASE_SECONDS) -> None:
        self.workspace = workspace
        self.desks = {
            ESCALATIONS: LocalDesk(workspace, queue_file=QUEUE_FILE, progress_file=PROGRESS_FILE, lease_seconds=lease_seconds),
            BATCH: LocalDesk(workspace, queue_file=BATCH_FILE, progress_file=BATCH_PROGRESS, lease_seconds=lease_seconds),
            RECHECK: LocalDesk(workspace, queue_file=RECHECK_QUEUE, progress_file=RECHECK_PROGRESS, lease_seconds=lease_seconds, queue_class=RecheckQueue),
        }
        self._labels: dict[str, list[str]] = {}

    def describe(self) -> str:
        return f"workspace {self.workspace.root}"

    def label_descriptions(self) -> dict[str, str]:
        """What each label means, as a team wrote it: WORKSPACE/console/labels.json, {"refund": "money back for ..."}."""
        data = _read_json(self.workspace.root / "console" / "labels.json")
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v)[:300] for k, v in data.items() if isinstance(v, str)}

    def rollback_target(self) -> str | None:
        """The version a rollback returns to (the production model before the current one), or None."""
        lineage: list[str] = []
        for event in self.history():
            if event.get("action") == "promote":
                lineage.append(str(event.get("version")))
            elif event.get("action") == "rollback" and lineage:
                lineage.pop()
        return lineage[-2] if len(lineage) >= 2 else None

    # -- labels and models -----------------------------------------------------
    def labels(self, model_version: str | None = None) -> list[str]:
        """Labels of that model version, else of production; [] without a model."""
        from sav_router.core.bundle import BundleError, read_manifest
        from sav_router.loop.workspace import RegistryError

        for version in (model_version, self.workspace.production_version()):
            if not version:
                continue
            if version not in self._labels:
                try:
                    self._labels[version] = sorted(read_manifest(self.workspace.model_dir(version)).labels)
                except (RegistryError, BundleError):
                    continue
            return self._labels[version]
        return []

    def models(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.workspace.models():
            comparison = self.workspace.comparison_for(entry.version)
            out.append(
                {
                    "version": entry.version,
                    "created_at": entry.manifest.created_at,
                    "in_production": entry.in_production,
                    "check": _metrics(entry.manifest.metrics.get("check")),  # none after recalibrate, or a train without check rows
                    "threshold": entry.manifest.policy.threshold,
                    "labels": len(entry.manifest.labels),
                    "gate": (comparison or {}).get("gate"),
                }
            )
        return out

    def production_version(self) -> str | None:
        return self.workspace.production_version()

    def manifest(self, version: str) -> dict[str, Any] | None:
        """The version's router.json as written (None when it cannot be read)."""
        from sav_router.core.bundle import MANIFEST_NAME
        from sav_router.loop.workspace import RegistryError

        try:
            data = _read_json(self.workspace.model_dir(version) / MANIFEST_NAME)
        except RegistryError:
            return None
        return data if isinstance(data, dict) else None

    def history(self) -> list[dict[str, Any]]:
        return list(self.workspace.registry().get("history", []))

    def comparison(self, version: str) -> dict[str, Any] | None:
        return self.workspace.comparison_for(version)

    # -- evaluation reports ----------------------------------------------------
    def reports(self, version: str) -> dict[str, Path]:
        """Report folders of a version: its check report, then every evaluation under evaluations/<version>/."""
        found: dict[str, Path] = {}
        check = self.workspace.path("models", version, "check_report")
        if (check / "report.json").is_file():
            found["check"] = check
        evaluations = self.workspace.path("evaluations", version)
        for path in sorted(evaluations.rglob("report.json")) if evaluations.is_dir() else []:
            found[str(path.parent.relative_to(evaluations)) or "evaluation"] = path.parent
        return found

    def report(self, version: str, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        folder = self.reports(version).get(name)
        if folder is None:
            return None, None
        return _read_json(folder / "report.json"), _read_json(folder / "details.json")

    # -- traffic and audit -----------------------------------------------------
    def traffic(self) -> Iterator[dict[str, Any]]:
        """Logged decisions: {id, at, decision, reasons, model_version} (text left out)."""
        from sav_router.monitoring.traffic import traffic_rows  # the one traffic format (core.traffic)

        for row in traffic_rows(self.workspace.root):
            production = row["production"]
            yield {
                "id": row.get("id"),
                "at": row.get("received_at"),
                "decision": production.get("decision"),
                "reasons": production.get("reasons") or [],
                "model_version": production.get("model_version"),
                "ood_score": production.get("ood_score"),
            }

    def texts(self, ids: set[str]) -> dict[str, str]:
        return {str(row["id"]): row["text"] for row in self._logged() if str(row.get("id")) in ids and isinstance(row.get("text"), str)}

    def _logged(self) -> Iterator[dict[str, Any]]:
        from sav_router.monitoring.traffic import traffic_rows

        return traffic_rows(self.workspace.root)

    def audit_answers(self) -> list[dict[str, Any]]:
        from sav_router.review.audit import workspace_audit_rows

        return [dict(row) for row in workspace_audit_rows(self.workspace)]

    # -- admin actions (the CLI's functions) ------------------------------------
    def promote(self, version: str, *, force: bool, reason: str | None, by: str) -> dict[str, Any]:
        return self.workspace.promote(version, force=force, reason=reason, by=by)

    def rollback(self, *, reason: str | None, by: str) -> dict[str, Any]:
        return self.workspace.rollback(reason=reason, by=by)

    def _traffic_requests(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for row in self._logged():
            if row.get("id") is not None and isinstance(row.get("text"), str) and row["text"].strip():
                rows[str(row["id"])] = {"id": str(row["id"]), "text": row["text"]}
        return list(rows.values())

    def _human_labels(self) -> dict[str, str]:
        """The newest human label per request id, from every annotation drop."""
        labels: dict[str, tuple[str, str]] = {}
        folder = self.workspace.path("annotations")
        for path in sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []:
            if path.name.endswith(".rejects.jsonl"):
                continue
            for row in lenient_rows(read_text(path)):
                if row.get("id") is not None and isinstance(row.get("label"), str) and row["label"].strip():
                    key = str(row.get("reviewed_at") or "")
                    if str(row["id"]) not in labels or key >= labels[str(row["id"])][0]:
                        labels[str(row["id"])] = (key, row["label"].strip())
        return {rid: label for rid, (_, label) in labels.items()}

    def compare(self, candidate: str) -> dict[str, Any]:
        """The candidate against production on the logged traffic, human labels where reviewers gave one."""
        from sav_router.loop.comparison import Gate
        from sav_router.loop.model_comparison import compare_models

        production = self.workspace.production_version()
        if production is None:
            raise ActionUnavailable("no model in production to compare with")
        if production == candidate:
            raise ActionUnavailable(f"{candidate} is the production model")
        rows = self._traffic_requests()
        if not rows:
            raise ActionUnavailable("no logged traffic to compare on (route requests first: `sav-router route`)")
        ids = {row["id"] for row in rows}
        gold = {rid: label for rid, label in self._human_labels().items() if rid in ids}
        report, _ = compare_models(self.workspace.production_dir(), self.workspace.model_dir(candidate), rows, gold, gate=Gate(), workspace=self.workspace)
        return report

    def start_batch(self, k: int) -> int:
        """Rank the logged requests nobody annotated yet with production (`select`) and queue the top k."""
        from sav_router.loop.active_learning import select_batch
        from sav_router.model.router import Router

        if not 1 <= k <= 1000:
            raise ActionUnavailable("a batch has 1 to 1000 requests")
        if self.workspace.production_version() is None:
            raise ActionUnavailable("no model in production to rank requests with")
        queued = {str(row.get("id")) for row in lenient_rows(read_text(self._batch_path()))}
        done = set(self._human_labels()) | queued
        pool = [row for row in self._traffic_requests() if row["id"] not in done]
        if not pool:
            raise ActionUnavailable("every logged request is annotated or already in the batch")
        router = Router.load(self.workspace.production_dir())
        picked, _ = select_batch(router, pool, min(k, len(pool)))
        now = utc_now().isoformat(timespec="seconds")
        items = [
            row | {"model_version": router.version, "queued_at": now, "reasons": _selection_reasons(row.get("signals") or {})}
            for row in picked
        ]
        from sav_router.review.queue import private_file

        append_jsonl(private_file(self._batch_path()), items)  # request text: owner-only
        return len(items)

    def _batch_path(self) -> Path:
        return self.workspace.path("review", BATCH_FILE)

    # -- the re-check of doubted annotations (review/recheck.py) ---------------
    def settle_rechecks(self, *, by: str) -> dict[str, int]:
        """`sav-router settle`: what the blind answers allow is settled, disagreements get a third opinion."""
        from collections import Counter

        from sav_router.review.recheck import settle

        return dict(Counter(s.outcome for s in settle(self.workspace, by=by)))

    def recheck_status(self) -> list[dict[str, Any]]:
        """Open doubts with what settling would do now, the earlier label and the answers given (an admin's page only)."""
        from sav_router.review.recheck import status

        return [{"key": d["key"], "id": d.get("id"), "text": d.get("text"), "split": d.get("split"), "label": d.get("label"),
                 "choices": list(d.get("choices") or []), "outcome": s.outcome, "reason": s.reason, "answers": s.answers}
                for d, s in status(self.workspace)]

    def settle_doubt(self, key: str, label: str, *, by: str, reason: str) -> dict[str, Any]:
        """An admin's word on one open doubt (`sav-router settle --id KEY --label L --reason TEXT`)."""
        from sav_router.review.recheck import settle_by_admin

        return settle_by_admin(self.workspace, key, label, by=by, reason=reason).__dict__

    def can(self, action: str) -> bool:
        return action in {"promote", "rollback", "compare", "batch", "settle"}


def _metrics(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _selection_reasons(signals: dict[str, float]) -> list[str]:
    """Why `select` ranked it, in words, strongest signal first."""
    words = {"uncertainty": "uncertain", "novelty": "novel", "disagreement": "disputed"}
    ranked = sorted(signals.items(), key=lambda item: -item[1])
    return [f"{words.get(name, name)} ({value:.2f})" for name, value in ranked if value > 0] or ["selected"]


class AwsSource:
    """The AWS deployment: the SQS review queue, reports and traffic in the artifacts bucket.

    Promotion on AWS is the approval of a model package (the promotion Lambda
    deploys it); the console shows the reports and the gate's verdict and
    leaves approval to SageMaker. Every read and write goes through
    `sav_router.aws` (`ReviewStore`, `SqsReviewQueue`, `s3_audit_rows`).
    """

    kind = "aws"

    def __init__(
        self, queue_url: str, bucket: str, *, prefix: str = ANNOTATIONS, sqs: Any = None, s3: Any = None, kms_key_id: str | None = None,
        lease_seconds: int = REVIEW_LEASE_SECONDS,
    ) -> None:
        desk = SqsDesk(queue_url, bucket, prefix, sqs=sqs, s3=s3, kms_key_id=kms_key_id, lease_seconds=lease_seconds)
        self.store, self.bucket, self.queue_url, self.prefix = desk.store, bucket, queue_url, prefix
        self.desks = {ESCALATIONS: desk}
        self._manifests: dict[str, dict[str, Any]] | None = None

    def describe(self) -> str:
        return f"SQS {self.queue_url.rsplit('/', 1)[-1]}, bucket {self.bucket}"

    def _all_manifests(self) -> dict[str, dict[str, Any]]:
        if self._manifests is None:
            self._manifests = self.store.manifests()
        return self._manifests

    def label_descriptions(self) -> dict[str, str]:
        return {}

    def rollback_target(self) -> str | None:
        return None

    def labels(self, model_version: str | None = None) -> list[str]:
        manifests = self._all_manifests()
        if model_version in manifests:
            return sorted(manifests[model_version].get("labels") or [])
        return sorted({label for data in manifests.values() for label in data.get("labels") or []})

    def models(self) -> list[dict[str, Any]]:
        runs = {str(report.get("model_version")): (report, comparison) for _, report, comparison in self.store.evaluation_runs()}
        out = []
        for version, data in sorted(self._all_manifests().items()):
            report, comparison = runs.get(version, (None, None))
            out.append(
                {
                    "version": version,
                    "created_at": data.get("created_at"),
                    "in_production": False,
                    "check": {key: (report or {}).get(key) for key in ("accuracy", "coverage", "routed_precision")},
                    "threshold": (data.get("policy") or {}).get("threshold"),
                    "labels": len(data.get("labels") or []),
                    "gate": (comparison or {}).get("gate"),
                }
            )
        return out

    def production_version(self) -> str | None:
        return None  # the endpoint's live version is SageMaker's to say

    def manifest(self, version: str) -> dict[str, Any] | None:
        return self._all_manifests().get(version)

    def history(self) -> list[dict[str, Any]]:
        return []

    def comparison(self, version: str) -> dict[str, Any] | None:
        for _, report, comparison in self.store.evaluation_runs():
            if str(report.get("model_version")) == version:
                return comparison
        return None

    def reports(self, version: str) -> dict[str, str]:
        return {f"check ({run})": run for run, report, _ in self.store.evaluation_runs() if str(report.get("model_version")) == version}

    def report(self, version: str, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        for run, report, _ in self.store.evaluation_runs():
            if str(report.get("model_version")) == version and name == f"check ({run})":
                return report, None
        return None, None

    def traffic(self) -> Iterator[dict[str, Any]]:
        for day, row in self.store.decisions():
            yield {"id": row.get("id"), "at": f"{day}T00:00:00+00:00", "decision": row.get("decision"), "reasons": row.get("reasons") or [],
                   "model_version": row.get("model_version"), "ood_score": row.get("ood_score")}

    def texts(self, ids: set[str]) -> dict[str, str]:
        return {}

    def audit_answers(self) -> list[dict[str, Any]]:
        from sav_router.review.audit import s3_audit_rows

        return [dict(row) for row in s3_audit_rows(self.store.s3, self.bucket, self.prefix)]

    def can(self, action: str) -> bool:
        return False

    def promote(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ActionUnavailable("on AWS a model goes to production by approving its model package (see README: How to approve a model)")

    rollback = compare = promote

    def settle_rechecks(self, *, by: str) -> dict[str, int]:
        raise ActionUnavailable(RECHECK_ON_AWS)

    def recheck_status(self) -> list[dict[str, Any]]:
        raise ActionUnavailable(RECHECK_ON_AWS)

    settle_doubt = settle_rechecks

    def start_batch(self, k: int) -> int:
        raise ActionUnavailable("on AWS, rank a batch with `sav-router select` and annotate it in Label Studio")
