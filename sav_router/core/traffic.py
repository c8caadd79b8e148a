"""One logged traffic batch, in the one format the routing Lambda and local `route` both write.

A batch is two JSONL files with the same name (see `core.layout`):
`traffic/requests/dt=DAY/NAME` holds `{"id", "text", "received_at"}` per request,
`traffic/decisions/dt=DAY/NAME` the decision records (`core.policy.decision_record`)
in the same order. Observer mode (`aws.shadow.prepare_shadow`, `sav-router compare`)
reads them back. Pure Python.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def request_key(request_id: Any, text: str) -> str:
    """A request's identity for de-duplication: its caller-given id AND its text.

    Two intake channels may both number their requests from 0: an id alone is no
    identity. The same id with the same text is the same request (a redelivery, a
    resumed run); the same id with another text is another request.
    """
    return f"{'' if request_id is None else request_id}\x1f{text_digest(text)}"


def distinct_id(request_id: Any, text: str) -> str:
    """The id a request is queued for review under when its caller id is already taken by another text."""
    return f"{request_id}#{text_digest(text)[:12]}"


def batch_name(now: datetime) -> str:
    return f"{now.strftime('%H%M%S')}-{uuid.uuid4().hex}.jsonl"


def request_row(request_id: str | None, text: str, received_at: datetime) -> dict[str, Any]:
    return {"id": request_id, "text": text, "received_at": received_at.isoformat(timespec="seconds")}


def traffic_batch(
    requests: Sequence[tuple[str | None, str]], decisions: Sequence[Mapping[str, Any]], *, received_at: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(request rows, decision rows) of one batch; `requests` are (id, text) pairs matching `decisions`."""
    if len(requests) != len(decisions):
        raise ValueError(f"{len(requests)} requests but {len(decisions)} decisions")
    return [request_row(rid, text, received_at) for rid, text in requests], [dict(d) for d in decisions]
