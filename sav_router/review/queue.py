"""Where escalated (and audit-sampled) requests wait for a reviewer.

Every queue answers the same four calls: `next_item()` (None when empty),
`ack(item, row)` (persist the answer as an annotation, then mark the item
done), `skip(item)` (leave it for later or for another reviewer) and
`release(item)` (the reviewer quits: the item stays queued). The answer is
always stored before the item is marked done, so a crash in between can at
worst show an item twice, never lose an answer.

- `LocalReviewQueue`: the workspace's `review/queue.jsonl`, with progress in
  `review/progress.jsonl` (append-only) so a restart resumes where it stopped.
- `SqsReviewQueue`: the AWS review queue; answers go to S3 `annotations/review/`
  (which starts the pipeline), and only then is the message deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from sav_router.review.items import AUDIT_SOURCE, REVIEW_SOURCE, ItemError, ReviewItem, parse_item, read_rows_lenient
from sav_router.core import layout
from sav_router.core.jsonio import append_jsonl, locked
from sav_router.loop.workspace import Workspace, stamp, utc_now

log = logging.getLogger(__name__)

QUEUE_FILE = layout.REVIEW_QUEUE
PROGRESS_FILE = layout.REVIEW_PROGRESS
ANSWERED = "answered"
SKIPPED = "skipped"


class ReviewQueue(Protocol):
    def next_item(self) -> ReviewItem | None: ...
    def ack(self, item: ReviewItem, row: Mapping[str, Any]) -> None: ...
    def skip(self, item: ReviewItem) -> None: ...
    def release(self, item: ReviewItem) -> None: ...


def _read_queue(path: Path) -> list[ReviewItem]:
    """Reviewable items in queue order, first entry per id; bad lines are left aside (logged by number only)."""
    items: dict[str, ReviewItem] = {}
    if not path.is_file():
        return []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = parse_item(json.loads(line))
        except (json.JSONDecodeError, ItemError) as exc:
            log.warning("review queue %s:%d not reviewable: %s", path.name, number, getattr(exc, "msg", exc))
            continue
        items.setdefault(item.id, item)
    return list(items.values())


class LocalReviewQueue:
    """The workspace queue. Unseen items come first, then items skipped in earlier sessions."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace  # not created here: files appear with the first answer
        self.queue_path = workspace.path("review", QUEUE_FILE)
        self.progress_path = workspace.path("review", PROGRESS_FILE)
        self.session = stamp()
        progress = read_rows_lenient(self.progress_path)
        self._answered = self._answered_ids(progress)
        self._skipped_before = {str(row.get("id")) for row in progress if row.get("status") == SKIPPED} - self._answered
        self._seen: set[str] = set()  # shown in this session (answered, skipped or released)
        self._items: list[ReviewItem] = []

    def _answered_ids(self, progress: list[dict[str, Any]]) -> set[str]:
        done = {str(row.get("id")) for row in progress if row.get("status") == ANSWERED}
        # An answer written just before a crash, whose progress line never was, also counts.
        for pattern in (f"*-{REVIEW_SOURCE}-teach.jsonl", f"*-{AUDIT_SOURCE}-check.jsonl"):
            for drop in self.workspace.path("annotations").glob(pattern):
                done |= {str(row["id"]) for row in read_rows_lenient(drop) if row.get("id") is not None}
        return done

    def drop_path(self, row: Mapping[str, Any]) -> Path:
        return self.workspace.path("annotations", f"{self.session}-{row['source']}-{row['split']}.jsonl")

    def _pick(self) -> ReviewItem | None:
        pending = [item for item in self._items if item.id not in self._answered and item.id not in self._seen]
        fresh = [item for item in pending if item.id not in self._skipped_before]
        return (fresh or pending or [None])[0]

    def next_item(self) -> ReviewItem | None:
        item = self._pick()
        if item is None:  # re-read: `route` may have queued more since
            self._items = _read_queue(self.queue_path)
            item = self._pick()
        if item is not None:
            self._seen.add(item.id)
        return item

    def _progress(self, item: ReviewItem, status: str) -> None:
        append_jsonl(self.progress_path, [{"id": item.id, "status": status, "at": utc_now().isoformat(timespec="seconds"), "session": self.session}])

    def ack(self, item: ReviewItem, row: Mapping[str, Any]) -> None:
        # Under the progress lock: two reviewers (two processes) on one workspace never both store an answer.
        with locked(self.progress_path):
            if any(r.get("id") == item.id and r.get("status") == ANSWERED for r in read_rows_lenient(self.progress_path)):
                log.warning("review item %s was answered meanwhile in another session; this answer is not stored", item.id)
            else:
                append_jsonl(self.drop_path(row), [row])  # the answer first (fsynced) ...
                self._progress(item, ANSWERED)  # ... then "done"
        self._answered.add(item.id)

    def skip(self, item: ReviewItem) -> None:
        self._progress(item, SKIPPED)

    def release(self, item: ReviewItem) -> None:
        self._seen.discard(item.id)  # nothing recorded: it is shown first on the next start

    def pending(self) -> int:
        return sum(1 for item in _read_queue(self.queue_path) if item.id not in self._answered)


def _region_of(queue_url: str) -> str | None:
    match = re.match(r"https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", queue_url)
    return match.group(1) if match else None


def answer_key(prefix: str, row: Mapping[str, Any]) -> str:
    """One object per request and split: a request answered twice (expired visibility) overwrites, never conflicts."""
    digest = hashlib.sha256(str(row["id"]).encode("utf-8")).hexdigest()[:20]
    return f"{prefix}review/{row['source']}-{row['split']}-{digest}.jsonl"


class SqsReviewQueue:
    """The AWS review queue: one message at a time, hidden from other reviewers while on screen."""

    def __init__(
        self,
        queue_url: str,
        bucket: str,
        prefix: str = "annotations/",
        *,
        sqs: Any = None,
        s3: Any = None,
        kms_key_id: str | None = None,
        visibility_timeout: int = 900,
        wait_seconds: int = 1,
        max_scan: int = 50,
    ) -> None:
        if sqs is None or s3 is None:
            import boto3

            sqs = sqs or boto3.client("sqs", region_name=_region_of(queue_url))
            s3 = s3 or boto3.client("s3")
        self.sqs, self.s3 = sqs, s3
        self.queue_url, self.bucket = queue_url, bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.kms_key_id = kms_key_id
        self.visibility_timeout, self.wait_seconds, self.max_scan = visibility_timeout, wait_seconds, max_scan
        self._skipped: set[str] = set()  # skipped in this session: not shown again to this reviewer
        self.unreviewable = 0
        self.undeleted = 0

    def _set_visibility(self, handle: str, seconds: int) -> None:
        self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=seconds)

    def next_item(self) -> ReviewItem | None:
        deferred: list[str] = []  # this reviewer's skipped messages, held until another is found
        try:
            for _ in range(self.max_scan):
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=1,
                    VisibilityTimeout=self.visibility_timeout,
                    WaitTimeSeconds=self.wait_seconds,
                ).get("Messages") or []
                if not messages:
                    return None
                message = messages[0]
                try:
                    item = parse_item(json.loads(message["Body"]), handle=message["ReceiptHandle"])
                except (json.JSONDecodeError, ItemError) as exc:
                    # Left hidden, not deleted: the queue's redrive policy moves it to the DLQ.
                    log.warning("review message %s not reviewable: %s", message.get("MessageId"), getattr(exc, "msg", exc))
                    self.unreviewable += 1
                    continue
                if item.id in self._skipped:
                    deferred.append(message["ReceiptHandle"])
                    continue
                return item
            return None
        finally:
            for handle in deferred:
                self._set_visibility(handle, 0)

    def ack(self, item: ReviewItem, row: Mapping[str, Any]) -> None:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}
        body = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        self.s3.put_object(Bucket=self.bucket, Key=answer_key(self.prefix, row), Body=body, ContentType="application/jsonlines", **extra)
        from botocore.exceptions import ClientError

        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=item.handle)
        except ClientError as exc:  # visibility expired: the answer is saved, the message may come back
            log.warning("review message for %s answered but not deleted: %s", item.id, exc.response.get("Error", {}).get("Code"))
            self.undeleted += 1

    def skip(self, item: ReviewItem) -> None:
        self._skipped.add(item.id)
        self._set_visibility(item.handle, 0)  # another reviewer can take it now

    def release(self, item: ReviewItem) -> None:
        self._set_visibility(item.handle, 0)  # quitting deletes nothing
