"""The drift monitor on AWS: logged decisions vs the production model's calibration sample.

Run on a schedule (hourly): reads the decision records the routing Lambda logs
under `traffic/decisions/dt=YYYY-MM-DD/` for the last `days` days, keeps the
model version that answered most of them (production), reads its calibration
reference from `models/manifests/<version>.json`, runs the same three tests as
`sav-router monitor` (`sav_router.monitoring.drift`) and publishes CloudWatch
metrics in the `SavRouter` namespace, dimension service=monitor:
`NoveltyFlaggedShare`, `DriftRequests`, `DriftAlarm` (1 when the monitor fires;
the alarm on it names the remedy). No request text is read or logged: decision
records carry scores and reasons only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sav_router.core import layout
from sav_router.aws import metrics as metric_names
from sav_router.core.defaults import DRIFT_ALPHA, DRIFT_DAYS_AWS
from sav_router.core.jsonio import lenient_rows
from sav_router.monitoring.drift import check_drift

NAMESPACE = metric_names.NAMESPACE
DIMENSIONS = [{"Name": metric_names.SERVICE_DIMENSION, "Value": metric_names.DRIFT_SERVICE}]


def _decisions(s3: Any, bucket: str, days: int, now: datetime) -> Iterator[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    for offset in range(days):
        prefix = layout.TRAFFIC_DECISIONS + layout.traffic_day(now - timedelta(days=offset))
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode("utf-8", errors="replace")
                yield from lenient_rows(body)  # a torn line is not evidence either way


def run_drift_check(
    s3: Any,
    cloudwatch: Any,
    bucket: str,
    *,
    days: int = DRIFT_DAYS_AWS,
    alpha: float = DRIFT_ALPHA,
    now: datetime | None = None,
    namespace: str = NAMESPACE,
) -> dict[str, Any]:
    """Test the last `days` of production decisions; publish the metrics; return the report."""
    now = now or datetime.now(timezone.utc)
    rows = list(_decisions(s3, bucket, days, now))
    versions = Counter(str(r.get("model_version")) for r in rows if r.get("model_version"))
    if not versions:
        report: dict[str, Any] = {"n": 0, "alarm": False, "model_version": None, "line": "monitor: no logged decision to test"}
    else:
        version = versions.most_common(1)[0][0]
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=layout.manifest_key(version))["Body"].read())
        reference = (manifest.get("calibration") or {}).get("reference") or {}
        if not reference.get("n"):
            report = {"n": 0, "alarm": False, "model_version": version, "line": f"monitor: model {version} has no calibration reference"}
        else:
            result = check_drift([r for r in rows if str(r.get("model_version")) == version], reference, alpha=alpha)
            report = result.to_dict() | {"model_version": version, "line": result.line()}
    metrics = [
        {"MetricName": metric_names.DRIFT_REQUESTS, "Value": float(report["n"]), "Unit": "Count"},
        {"MetricName": metric_names.DRIFT_ALARM, "Value": 1.0 if report["alarm"] else 0.0, "Unit": "Count"},
    ]
    if report.get("flagged_share") is not None:
        metrics.append({"MetricName": metric_names.NOVELTY_FLAGGED_SHARE, "Value": float(report["flagged_share"]), "Unit": "None"})
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[m | {"Dimensions": DIMENSIONS, "Timestamp": now} for m in metrics])
    return report


def handler_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the Lambda logs: counts, p-values and the verdict (never a text)."""
    keys = ("model_version", "n", "flagged", "flagged_share", "reference_share", "flagged_p_value", "confidence_p_value", "novelty_p_value", "alarm")
    return {k: report.get(k) for k in keys}
