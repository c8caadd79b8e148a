"""The bundle manifest's calibrated part and version stamp: one builder that `train` and `recalibrate` share.

Whatever calibrates a bundle (a first training, or a new traffic sample on an
existing bundle) writes the same fields from the same objects: the routing
policy, the temperature, the calibration record with its promise and the
monitor's reference, the novelty threshold, and a version named from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from sav_router import __version__
from sav_router.calibration.thresholds import CalibrationResult, policy_from_calibration
from sav_router.core.clock import utc_now
from sav_router.monitoring.reference import drift_reference


def model_version(data_fingerprint: str, created: datetime) -> str:
    return f"{created.strftime('%Y%m%dT%H%M%SZ')}-{data_fingerprint[:8]}"


def version_fields(data_fingerprint: str) -> dict[str, Any]:
    """model_version, created_at and package_version of a bundle made now from data with this fingerprint."""
    created = utc_now()
    return {"model_version": model_version(data_fingerprint, created), "created_at": created.isoformat(timespec="seconds"),
            "package_version": __version__}


def calibrated_fields(result: CalibrationResult, detector: Any, *, scope: Mapping[str, Any], logits: np.ndarray, novelty: np.ndarray,
                      teams: Mapping[str, str | None], label_doubts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """policy, temperature and calibration (with its promise and the drift monitor's reference) of a calibrated bundle.

    `logits` and `novelty`: the calibration sample's, whose calibrated scores the monitor
    compares live traffic with (the whole sample, off-topic rows included). `label_doubts`:
    the sample's estimated label-error rate (`doubts.estimate`), which the promotion gate can bound.
    """
    return {
        "policy": policy_from_calibration(result, teams=dict(teams), ood_threshold=detector.threshold_),
        "temperature": result.temperature,
        "calibration": result.to_dict() | {
            "promise": dict(scope),
            "reference": drift_reference(logits / result.temperature, novelty, detector.threshold_),
        } | ({"label_doubts": dict(label_doubts)} if label_doubts else {}),
    }
