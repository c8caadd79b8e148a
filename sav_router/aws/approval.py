"""The approval rule of a registered candidate, in one place.

The pipeline registers each candidate as a SageMaker model package with an approval status:
`Approved` deploys it (the promotion function listens for exactly that status), anything else
waits for a person. Written by the shadow-comparison step (`aws/shadow.py`) and, when there is no
traffic to replay, by the state machine itself (`infra/training_pipeline.py` renders the same rule);
read by the promotion rule and function (`infra/promotion.py`, `aws/promotion.py`). Pure Python.
"""

from __future__ import annotations

APPROVED = "Approved"  # SageMaker's ModelApprovalStatus values
PENDING = "PendingManualApproval"

MANUAL = "manual"  # approvalMode in cdk.json: a person approves every candidate
AUTO = "auto"  # candidates that pass the gates are approved (and deployed) without one
APPROVAL_MODES = (MANUAL, AUTO)


def approval_status(mode: str, *, shadow_passed: bool | None) -> str:
    """Auto-approve only in auto mode, and only when the shadow gate passed or there was no traffic to replay (None)."""
    return APPROVED if mode == AUTO and shadow_passed is not False else PENDING
