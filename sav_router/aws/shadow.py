"""Observer mode: the candidate replays recent production traffic, then is compared with production.

The routing Lambda logs each batch's requests and decisions under
`traffic/requests/dt=DAY/NAME` and `traffic/decisions/dt=DAY/NAME`. Here the
recent days are gathered into one Batch Transform input (latest decision per
request id), and after the transform the core `compare_decisions` measures
flips and, on requests a human has since labeled, precision and coverage.

The candidate's raw container answers are re-decided by the same `redecide` as
production's (the routing Lambda): its own policy from `models/manifests/`,
tightened by the same operator overrides, and the same teams with a queue, so
an active override gives neither side coverage for free.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sav_router.core import layout
from sav_router.aws.approval import approval_status
from sav_router.aws.routing import PolicyStore
from sav_router.aws.s3io import CUSTOMER_TEXT_TAG, get_json, get_jsonl, list_keys, put_json, put_jsonl
from sav_router.core.policy import redecide
from sav_router.loop.comparison import compare_decisions


def prepare_shadow(s3: Any, bucket: str, run_id: str, *, days: int, max_requests: int, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    paths = layout.run_paths(bucket, run_id)
    requests: dict[str, dict] = {}
    decisions: dict[str, dict] = {}
    for back in range(days):
        day = layout.traffic_day(now - timedelta(days=back))
        for obj in sorted(list_keys(s3, bucket, layout.TRAFFIC_REQUESTS + day), key=lambda o: o["Key"], reverse=True):
            name = obj["Key"][len(layout.TRAFFIC_REQUESTS) :]
            try:
                logged = {str(d["id"]): d for d in get_jsonl(s3, bucket, layout.TRAFFIC_DECISIONS + name)}
            except s3.exceptions.NoSuchKey:
                continue  # a batch whose decisions were not written: nothing to compare against
            for request in get_jsonl(s3, bucket, obj["Key"]):
                request_id = str(request["id"])
                if request_id in requests or request_id not in logged or len(requests) >= max_requests:
                    continue  # newest first: keep the latest decision per request
                requests[request_id] = {"id": request_id, "text": request["text"]}
                decisions[request_id] = logged[request_id]
    # The one copy of customer text outside traffic/requests/: tagged, so that it expires with the traffic it copies
    # (lifecycle rule) and only the observer-mode step and SageMaker may read it (bucket policy), as traffic/requests/.
    put_jsonl(s3, bucket, paths["shadow_input_key"], requests.values(), tags=CUSTOMER_TEXT_TAG)
    put_jsonl(s3, bucket, paths["shadow_production_key"], decisions.values())
    return {"count": len(requests), "days": days, "input_uri": paths["shadow_input_uri"], "output_uri": paths["shadow_output_uri"]}


def compare_shadow(
    s3: Any,
    bucket: str,
    run_id: str,
    *,
    approval_mode: str,
    policies: PolicyStore | None = None,
    teams_with_queue: frozenset[str] | None = None,
) -> dict[str, Any]:
    """`policies` should be the routing Lambda's (same SSM overrides); default: the manifests' policies, no overrides."""
    policies = policies or PolicyStore(s3=s3, bucket=bucket, ssm=None, overrides_parameter=None)
    paths = layout.run_paths(bucket, run_id)
    production = get_jsonl(s3, bucket, paths["shadow_production_key"])
    candidate = [
        redecide(answer, policies.policy_for(answer.get("model_version")), teams_with_queue)
        for answer in get_jsonl(s3, bucket, paths["shadow_output_key"])
    ]
    gold: Mapping[str, str] = get_json(s3, bucket, paths["gold_by_id_key"])
    report = compare_decisions(production, candidate, gold)
    put_json(s3, bucket, paths["comparison_key"], report)
    passed = bool(report["gate"]["passed"])
    return {
        "report_uri": layout.s3_uri(bucket, paths["comparison_key"]),
        "n_compared": report["n_compared"],
        "agreement_rate": report["agreement_rate"],
        "gate_passed": passed,
        "gate_reason": report["gate"]["reason"],
        "approval_status": approval_status(approval_mode, shadow_passed=passed),
    }
