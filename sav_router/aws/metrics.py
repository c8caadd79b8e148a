"""CloudWatch metric names shared by the Lambdas that emit them and the alarms that watch them.

Pure Python: `infra/` imports it at synth time, the routing Lambda at run time.
"""

from __future__ import annotations

from sav_router.aws.settings import RoutingSettings
from sav_router.core.policy import REASONS

NAMESPACE = "SavRouter"  # POWERTOOLS_METRICS_NAMESPACE of every function
SERVICE_DIMENSION = "service"  # Powertools adds it, valued with POWERTOOLS_SERVICE_NAME (the function's folder name)
# service= of the routing function's metrics: its POWERTOOLS_SERVICE_NAME, the name infra/routing.py gives the
# function (lambdas/routing/), so the alarms and the dashboard (infra/monitoring.py) watch what it emits.
ROUTING_SERVICE = RoutingSettings.function
DRIFT_SERVICE = "monitor"  # service= of the drift monitor's metrics, published by sav_router.aws.drift itself

ROUTED = "Routed"
ESCALATED = "Escalated"
MALFORMED = "Malformed"
MODEL_UNAVAILABLE = "ModelUnavailable"
DRIFT_ALARM = "DriftAlarm"  # 1 when the drift monitor fires (service=monitor)
DRIFT_REQUESTS = "DriftRequests"
NOVELTY_FLAGGED_SHARE = "NoveltyFlaggedShare"
OVERRIDES_REFUSED = "OverridesRefused"  # an operator override refused when read (the last good one is kept)


def escalation_metric(reason: str) -> str:
    """The per-reason escalation count (one per `core.policy.REASONS`)."""
    if reason not in REASONS:
        raise ValueError(f"unknown escalation reason {reason!r}")
    return f"Escalation_{reason}"


ESCALATION_METRICS = tuple(escalation_metric(reason) for reason in REASONS)
