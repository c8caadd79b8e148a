"""The quality gate between evaluation and registration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def quality_gate(report: Mapping[str, Any], *, target_precision: float, min_coverage: float) -> dict[str, Any]:
    """Pass when the candidate routes something, at the target routed precision, with enough coverage.

    Precision is the point estimate on the held-out `check` rows (the lower
    bound is reported next to it); the calibration already guarantees the
    target with the bundle's confidence on its own calibration split.
    """
    precision = report.get("routed_precision")
    coverage = float(report.get("coverage") or 0.0)
    reasons = []
    if not report.get("routed"):
        reasons.append("routes nothing on the check set")
    elif precision is None or precision < target_precision:
        reasons.append(f"routed precision {precision} below target {target_precision}")
    if coverage < min_coverage:
        reasons.append(f"coverage {coverage} below minimum {min_coverage}")
    return {
        "passed": not reasons,
        "reasons": reasons,
        "summary": "; ".join(reasons) if reasons else f"routed precision {precision} >= {target_precision}, coverage {coverage} >= {min_coverage}",
        "routed_precision": precision,
        "routed_precision_lower_bound": report.get("routed_precision_lower_bound"),
        "coverage": coverage,
    }
