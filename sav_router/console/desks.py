"""A review queue as reviewers see it in the console: one item each, kept across reloads.

`current(user)` is the item the user holds (the same one after a reload),
else a newly leased one; `answer` and `skip` act on it only while the lease
holds; `undo` takes back the user's last answer. Answers are the annotation
rows `review` writes (`annotation_row`), with the reviewer's name.

- `LocalDesk`: the workspace queue, leases in `review/*.leases.json` under a
  lock file (`LocalReviewQueue`), so they survive a restart; the re-check desk
  is one on `RecheckQueue`, whose answers go to `review/recheck/`, not `annotations/`.
- `SqsDesk`: the SQS review queue; the lease is the message's visibility
  timeout, renewed while the item is on screen (the queue calls beyond
  `SqsReviewQueue`'s are `sav_router.aws.review_store.ReviewStore`'s). After a console restart the
  held receipt handles are gone: the message comes back when its visibility
  timeout runs out (nothing is lost, it waits that long).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from sav_router.aws.review_store import ReviewStore
from sav_router.core.defaults import REVIEW_LEASE_SECONDS
from sav_router.core.layout import ANNOTATIONS
from sav_router.review.items import ReviewItem, annotation_row
from sav_router.review.queue import LeaseLost, LocalReviewQueue, SqsReviewQueue, answer_key
from sav_router.loop.workspace import Workspace


class LocalDesk:
    def __init__(
        self, workspace: Workspace, *, queue_file: str, progress_file: str, lease_seconds: float, queue_class: type[LocalReviewQueue] = LocalReviewQueue,
    ) -> None:
        self.workspace, self.queue_class = workspace, queue_class
        self.queue_file, self.progress_file, self.lease_seconds = queue_file, progress_file, lease_seconds
        self._queues: dict[str, LocalReviewQueue] = {}
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self.undone: dict[str, str | None] = {}  # the label of each user's answer taken back last

    def _queue(self, user: str) -> tuple[LocalReviewQueue, threading.Lock]:
        with self._guard:
            if user not in self._queues:
                self._queues[user] = self.queue_class(
                    self.workspace, holder=f"console:{user}", lease_seconds=self.lease_seconds, queue_file=self.queue_file, progress_file=self.progress_file,
                    revisit_skipped=True,
                )
            return self._queues[user], self._locks[user]

    def current(self, user: str, *, again: bool = False) -> ReviewItem | None:
        queue, lock = self._queue(user)
        with lock:
            if again:
                queue.revisit()
            return queue.current()

    def _held(self, queue: LocalReviewQueue, item_id: str) -> ReviewItem:
        """The item, if nobody else holds it and nobody answered it (an expired lease nobody took is still this reviewer's)."""
        item = queue.find(item_id)
        if item is None or not queue.renew(item_id):
            raise LeaseLost("this request is no longer yours (answered elsewhere or its lease ran out): here is the next one")
        return item

    def answer(self, user: str, item_id: str, label: str) -> dict[str, Any]:
        queue, lock = self._queue(user)
        with lock:
            item = self._held(queue, item_id)
            row = annotation_row(item, label, reviewer=user)
            queue.ack(item, row)
            return row

    def renew(self, user: str, item_id: str) -> bool:
        """The page is still shown: its lease is extended (False: it is someone else's now, or answered)."""
        queue, lock = self._queue(user)
        with lock:
            return queue.renew(item_id)

    def counts(self, user: str) -> dict[str, int]:
        queue, lock = self._queue(user)
        with lock:
            return queue.counts() | {"skipped": queue.skipped_waiting()}

    def skip(self, user: str, item_id: str) -> ReviewItem:
        queue, lock = self._queue(user)
        with lock:
            item = self._held(queue, item_id)
            queue.skip(item)
            return item

    def undo(self, user: str) -> ReviewItem | None:
        queue, lock = self._queue(user)
        with lock:
            item = queue.undo()
            row = getattr(queue, "undone_row", None)
            self.undone[user] = row.get("label") if item is not None and row else None
            return item

    def pending(self) -> int | None:
        return LocalReviewQueue(self.workspace, holder="console:count", queue_file=self.queue_file, progress_file=self.progress_file).pending()


class SqsDesk:
    def __init__(
        self, queue_url: str, bucket: str, prefix: str = ANNOTATIONS, *, sqs: Any = None, s3: Any = None, kms_key_id: str | None = None,
        lease_seconds: int = REVIEW_LEASE_SECONDS,
    ) -> None:
        self.queue_url, self.bucket, self.kms_key_id = queue_url, bucket, kms_key_id
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.lease_seconds = int(lease_seconds)
        probe = SqsReviewQueue(queue_url, bucket, self.prefix, sqs=sqs, s3=s3)
        self.sqs, self.s3 = probe.sqs, probe.s3
        self.store = ReviewStore(queue_url, bucket, sqs=self.sqs, s3=self.s3)
        self._queues: dict[str, SqsReviewQueue] = {}
        self._held: dict[str, tuple[ReviewItem, float]] = {}
        self._answers: dict[str, list[tuple[ReviewItem, dict[str, Any]]]] = defaultdict(list)
        self.undone: dict[str, str | None] = {}
        self._guard = threading.Lock()

    def _queue(self, user: str) -> SqsReviewQueue:
        if user not in self._queues:
            self._queues[user] = SqsReviewQueue(
                self.queue_url, self.bucket, self.prefix, sqs=self.sqs, s3=self.s3, kms_key_id=self.kms_key_id, visibility_timeout=self.lease_seconds
            )
        return self._queues[user]

    def current(self, user: str, *, again: bool = False) -> ReviewItem | None:
        with self._guard:
            held = self._held.get(user)
            if held is not None and time.time() < held[1] and self.store.renew(held[0].handle, self.lease_seconds):  # renewed while on screen, like a lease
                self._held[user] = (held[0], time.time() + self.lease_seconds)
                return held[0]
            self._held.pop(user, None)
            item = self._queue(user).next_item()
            if item is not None:
                self._held[user] = (item, time.time() + self.lease_seconds)
            return item

    def _take(self, user: str, item_id: str) -> ReviewItem:
        held = self._held.get(user)
        if held is None or held[0].id != item_id or time.time() >= held[1]:
            self._held.pop(user, None)
            raise LeaseLost("this request is no longer yours (its visibility timeout ran out): here is the next one")
        return held[0]

    def answer(self, user: str, item_id: str, label: str) -> dict[str, Any]:
        with self._guard:
            item = self._take(user, item_id)
            row = annotation_row(item, label, reviewer=user)
            self._queue(user).ack(item, row)  # the answer to S3 first, then the message deleted
            self._held.pop(user, None)
            self._answers[user].append((item, row))
            return row

    def skip(self, user: str, item_id: str) -> ReviewItem:
        with self._guard:
            item = self._take(user, item_id)
            self._queue(user).skip(item)
            self._held.pop(user, None)
            return item

    def undo(self, user: str) -> ReviewItem | None:
        """The answer object is deleted and the request sent back to the queue (in this console's lifetime only)."""
        with self._guard:
            if not self._answers[user]:
                return None
            item, row = self._answers[user].pop()
            self.undone[user] = row.get("label")
            self.store.delete(answer_key(self.prefix, row))
            self.store.send_back(item.raw)
            self._queue(user).unskip(item.id)
            return item

    def pending(self) -> int | None:
        return self.store.waiting()

    def renew(self, user: str, item_id: str) -> bool:
        with self._guard:
            held = self._held.get(user)
            if held is None or held[0].id != item_id or not self.store.renew(held[0].handle, self.lease_seconds):
                return False
            self._held[user] = (held[0], time.time() + self.lease_seconds)
            return True

    def counts(self, user: str) -> dict[str, int]:
        """SQS's approximate counts: visible messages wait, hidden ones are on a reviewer's screen."""
        values = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        held = int(values.get("ApproximateNumberOfMessagesNotVisible", 0))
        mine = 1 if self._held.get(user) else 0
        return {"waiting": int(values.get("ApproximateNumberOfMessages", 0)), "held": held, "held_by_others": max(0, held - mine), "skipped": 0}
