"""Review queue items in, annotation rows out.

A queue item is a decision record (`sav_router.cli.decision_record`) plus
`text`, `audit` (true: a confidently routed request sampled for audit) and
`queued_at`. The SQS review queue may carry the routing Lambda's envelope
`{"request": {"id", "text"}, "decision": {...}}` instead; both are accepted.
Reading is lenient: only `text` is required (an item without an id gets one
derived from its text, so the answer still has a stable id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sav_router.data.annotations import CHECK, TEACH
from sav_router.core.clock import utc_now

REVIEW_SOURCE = "review"  # answers to escalations: teach annotations
AUDIT_SOURCE = "audit"  # answers to audit samples: check annotations, never trained on
RECHECK_SOURCE = "recheck"  # a doubted annotation settled by blind second (and third) opinions


class ItemError(ValueError):
    """A queue entry that cannot be reviewed (not an object, no text...)."""


@dataclass(frozen=True)
class ReviewItem:
    id: str
    text: str
    audit: bool = False
    label: str | None = None  # the model's top label (the routed label of an audit sample)
    confidence: float | None = None
    reasons: tuple[str, ...] = ()
    top_k: tuple[tuple[str, float], ...] = ()
    model_version: str | None = None
    queued_at: str | None = None
    recheck_split: str | None = None  # a re-check of a doubted annotation: the split its answer keeps (shown blind)
    handle: Any = field(default=None, compare=False, repr=False)  # transport detail (SQS receipt handle)
    raw: Any = field(default=None, compare=False, repr=False)  # the message body as received (the console's undo sends it back)


def _top_k(raw: Any) -> tuple[tuple[str, float], ...]:
    pairs = []
    for entry in raw if isinstance(raw, list) else []:
        try:
            label, score = (entry["label"], entry["score"]) if isinstance(entry, Mapping) else entry
            pairs.append((str(label), float(score)))
        except (KeyError, TypeError, ValueError):
            continue  # one bad suggestion does not make the request unreviewable
    return tuple(pairs)


def _flatten(data: Mapping[str, Any]) -> Mapping[str, Any]:
    request, decision = data.get("request"), data.get("decision")
    if isinstance(request, Mapping) and isinstance(decision, Mapping):
        extra = {key: data[key] for key in ("audit", "queued_at") if key in data}
        return {**decision, **extra, "id": request.get("id"), "text": request.get("text")}
    return data


def parse_item(data: Any, *, handle: Any = None, raw: Any = None) -> ReviewItem:
    if not isinstance(data, Mapping):
        raise ItemError("not a JSON object")
    data = _flatten(data)
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ItemError("no request text")
    raw_id = data.get("id")
    item_id = str(raw_id) if raw_id not in (None, "") else "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    confidence = data.get("confidence")
    label = data.get("label")
    return ReviewItem(
        id=item_id,
        text=text,
        audit=data.get("audit") is True,
        label=str(label) if label else None,
        confidence=float(confidence) if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) else None,
        reasons=tuple(str(r) for r in data.get("reasons") or () if r),
        top_k=_top_k(data.get("top_k")),
        model_version=str(data["model_version"]) if data.get("model_version") else None,
        queued_at=str(data["queued_at"]) if data.get("queued_at") else None,
        recheck_split=str(data["recheck_split"]) if data.get("recheck_split") else None,
        handle=handle,
        raw=raw,
    )


def annotation_row(item: ReviewItem, label: str, *, reviewer: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The annotation a reviewer's answer becomes (fields beyond id/text/label/split are provenance)."""
    return {
        "id": item.id,
        "text": item.text,
        "label": label,
        "split": item.recheck_split or (CHECK if item.audit else TEACH),
        "source": RECHECK_SOURCE if item.recheck_split else AUDIT_SOURCE if item.audit else REVIEW_SOURCE,
        "model_label": item.label,
        "model_version": item.model_version,
        "reasons": list(item.reasons),
        "reviewer": reviewer,
        "reviewed_at": (now or utc_now()).isoformat(timespec="seconds"),
    }
