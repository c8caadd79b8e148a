"""Where escalated (and audit-sampled) requests wait for a reviewer.

Every queue answers the same four calls: `next_item()` (None when empty),
`ack(item, row)` (persist the answer as an annotation, then mark the item
done), `skip(item)` (leave it for later or for another reviewer) and
`release(item)` (the reviewer quits: the item stays queued). The answer is
always stored before the item is marked done, so a crash in between can at
worst show an item twice, never lose an answer.

- `LocalReviewQueue`: the workspace's `review/queue.jsonl`, with progress in
  `review/progress.jsonl` (append-only) so a restart resumes where it stopped;
  every item handed out is leased to its holder (`review/queue.leases.json`,
  under the lock file `review/.lock`), and `undo()` takes the holder's last
  answer back.
- `SqsReviewQueue`: the AWS review queue; answers go to S3 `annotations/review/`
  (which starts the pipeline), and only then is the message deleted.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from sav_router.review.items import AUDIT_SOURCE, REVIEW_SOURCE, ItemError, ReviewItem, parse_item
from sav_router.core import layout
from sav_router.core.defaults import REVIEW_LEASE_SECONDS
from sav_router.core.clock import stamp, utc_now
from sav_router.core.jsonio import append_jsonl, dumps_line, locked, numbered_rows, read_jsonl, read_text, write_json_atomic, write_jsonl_atomic
from sav_router.loop.workspace import Workspace

log = logging.getLogger(__name__)

QUEUE_FILE = layout.REVIEW_QUEUE
PROGRESS_FILE = layout.REVIEW_PROGRESS
ANSWERED = "answered"
SKIPPED = "skipped"
UNDONE = "undone"
DEFAULT_LEASE_SECONDS = REVIEW_LEASE_SECONDS  # the SQS review queue's visibility timeout too (core.defaults)


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
    for number, row, problem in numbered_rows(read_text(path)):
        try:
            if row is None:
                raise ItemError(problem)
            item = parse_item(row)
        except ItemError as exc:
            log.warning("review queue %s:%d not reviewable: %s", path.name, number, exc)
            continue
        items.setdefault(item.id, item)
    return list(items.values())


def private_file(path: Path) -> Path:
    """Create a file for request text readable by its owner only (0600), if it does not exist yet (the console's audit log too)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    return path


class LeaseLost(RuntimeError):
    """The item is no longer leased to this holder (expired and taken, answered elsewhere)."""


class LocalReviewQueue:
    """The workspace queue. Unseen items come first, then items skipped in earlier sessions.

    Every item handed out is leased to its holder for `lease_seconds` (like an
    SQS visibility timeout) in `review/<queue>.leases.json`, under an exclusive
    lock file: two reviewers, in one process or two, never get the same item.
    The same holder asking again gets its leased item back (a reloaded page),
    and an expired lease makes the item available again (a closed tab).
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        holder: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        queue_file: str = QUEUE_FILE,
        progress_file: str = PROGRESS_FILE,
        clock: Callable[[], float] = time.time,
        revisit_skipped: bool = False,
    ) -> None:
        self.revisit_skipped = revisit_skipped  # the console: once nothing else is left, skipped items come back
        self.workspace = workspace  # not created here: files appear with the first answer
        self.queue_path = workspace.path("review", queue_file)
        self.progress_path = workspace.path("review", progress_file)
        self.leases_path = workspace.path("review", Path(queue_file).stem + ".leases.json")
        # one lock for every queue of the workspace: review/leases.lock (core.jsonio.locked)
        self.lock_target = workspace.path("review", "leases")
        self.session = stamp()
        self.holder = holder or f"{getpass.getuser()}@{self.session}"
        self.lease_seconds, self.clock = lease_seconds, clock
        progress = read_jsonl(self.progress_path)
        self._answered = self._answered_ids(progress)
        self._skipped_before = {str(row.get("id")) for row in progress if row.get("status") == SKIPPED} - self._answered
        self._seen: set[str] = set()  # shown in this session (answered, skipped or released)
        self._items: list[ReviewItem] = []
        self._last_skipped: str | None = None  # not shown again at once (revisit_skipped)

    @staticmethod
    def _replay(progress: list[dict[str, Any]]) -> set[str]:
        done: set[str] = set()
        for row in progress:  # in order: an undo takes an answer back
            if row.get("status") == ANSWERED:
                done.add(str(row.get("id")))
            elif row.get("status") == UNDONE:
                done.discard(str(row.get("id")))
        return done

    def _answered_ids(self, progress: list[dict[str, Any]]) -> set[str]:
        done = self._replay(progress)
        undone = {str(row.get("id")) for row in progress if row.get("status") == UNDONE} - done
        # An answer written just before a crash, whose progress line never was, also counts.
        for pattern in (f"*-{REVIEW_SOURCE}-teach.jsonl", f"*-{AUDIT_SOURCE}-check.jsonl"):
            for drop in self.workspace.path("annotations").glob(pattern):
                done |= {str(row["id"]) for row in read_jsonl(drop) if row.get("id") is not None} - undone
        return done

    def drop_path(self, row: Mapping[str, Any]) -> Path:
        return self.workspace.path("annotations", f"{self.session}-{row['source']}-{row['split']}.jsonl")

    # -- leases ----------------------------------------------------------------
    def _locked(self):
        """One process at a time reads and changes leases and progress (flock: released if the process dies)."""
        return locked(self.lock_target)

    def _leases(self) -> dict[str, dict[str, Any]]:
        """Live leases (expired ones dropped)."""
        try:
            raw = json.loads(self.leases_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        now = self.clock()
        return {key: lease for key, lease in raw.items() if isinstance(lease, dict) and float(lease.get("until", 0)) > now}

    def _write_leases(self, leases: Mapping[str, Any]) -> None:
        write_json_atomic(self.leases_path, dict(leases))

    def _lease(self, leases: dict[str, dict[str, Any]], item_id: str) -> None:
        leases[item_id] = {"holder": self.holder, "until": self.clock() + self.lease_seconds}
        self._write_leases(leases)

    def _unlease(self, item_id: str) -> None:
        leases = self._leases()
        if leases.get(item_id, {}).get("holder") == self.holder:
            del leases[item_id]
            self._write_leases(leases)

    def renew(self, item_id: str) -> bool:
        """Extend this holder's lease on an item still on its screen; False when another holder has it or it is answered.

        An expired lease nobody else took is taken again: the server refuses nothing a reviewer still holds.
        """
        with self._locked():
            leases = self._fresh_leases()
            if item_id in self._answered or leases.get(item_id, {}).get("holder", self.holder) != self.holder:
                return False
            self._lease(leases, item_id)
            return True

    def find(self, item_id: str) -> ReviewItem | None:
        """The queued item with this id (whoever holds it)."""
        return next((i for i in self._items if i.id == item_id), None) or next((i for i in _read_queue(self.queue_path) if i.id == item_id), None)

    def counts(self) -> dict[str, int]:
        """Unanswered items: `waiting` (nobody has them on screen) and `held` (on some reviewer's screen, this one's included)."""
        with self._locked():
            leases = self._fresh_leases()
            open_ids = [item.id for item in _read_queue(self.queue_path) if item.id not in self._answered]
            held = sum(1 for item_id in open_ids if item_id in leases)
            return {"waiting": len(open_ids) - held, "held": held, "held_by_others": sum(1 for i in open_ids if leases.get(i, {}).get("holder", self.holder) != self.holder)}

    def holds(self, item_id: str) -> bool:
        """Whether this holder's lease on the item is still live."""
        with self._locked():
            return self._leases().get(item_id, {}).get("holder") == self.holder

    # -- the queue calls -------------------------------------------------------
    def _pick(self, leases: Mapping[str, Mapping[str, Any]]) -> ReviewItem | None:
        taken = {key for key, lease in leases.items() if lease.get("holder") != self.holder}
        pending = [item for item in self._items if item.id not in self._answered and item.id not in self._seen and item.id not in taken]
        fresh = [item for item in pending if item.id not in self._skipped_before]
        if not pending and self.revisit_skipped:
            # skipped ones come back once nothing else is left, but never the one just skipped at once
            pending = [item for item in self._items if item.id not in self._answered and item.id not in taken and item.id != self._last_skipped]
        return (fresh or pending or [None])[0]

    def skipped_waiting(self) -> int:
        """Items this holder skipped that still wait (offered again on request)."""
        with self._locked():
            leases = self._fresh_leases()
            return sum(1 for item in self._items if item.id in self._seen and item.id not in self._answered and item.id not in leases)

    def revisit(self) -> None:
        """Let the item skipped last come back too (the reviewer asked for the skipped ones again)."""
        self._last_skipped = None

    def next_item(self) -> ReviewItem | None:
        """The next item nobody else holds, leased to this holder."""
        with self._locked():
            return self._next(self._fresh_leases())

    def current(self) -> ReviewItem | None:
        """The item this holder already leases (a reloaded page gets it back, lease renewed), else the next one."""
        with self._locked():
            leases = self._fresh_leases()
            held = {key for key, lease in leases.items() if lease.get("holder") == self.holder and key not in self._answered}
            if held:
                item = next((i for i in self._items if i.id in held), None) or next((i for i in _read_queue(self.queue_path) if i.id in held), None)
                if item is not None:
                    self._lease(leases, item.id)
                    return item
            return self._next(leases)

    def _fresh_leases(self) -> dict[str, dict[str, Any]]:
        self._answered |= self._replay(read_jsonl(self.progress_path))  # answers of other reviewers
        return self._leases()

    def _next(self, leases: dict[str, dict[str, Any]]) -> ReviewItem | None:
        item = self._pick(leases)
        if item is None:  # re-read: `route` may have queued more since
            self._items = _read_queue(self.queue_path)
            item = self._pick(leases)
        if item is not None:
            self._seen.add(item.id)
            self._lease(leases, item.id)
        return item

    def _progress(self, item: ReviewItem, status: str, **extra: Any) -> None:
        row = {"id": item.id, "status": status, "at": utc_now().isoformat(timespec="seconds"), "session": self.session, "holder": self.holder}
        append_jsonl(self.progress_path, [row | extra])

    def ack(self, item: ReviewItem, row: Mapping[str, Any]) -> None:
        """Store the answer, then mark the item done; refused if another holder has it now."""
        with self._locked():
            lease = self._leases().get(item.id)
            if lease is not None and lease.get("holder") != self.holder:
                raise LeaseLost(f"request {item.id} is leased to another reviewer now")
            if item.id in self._replay(read_jsonl(self.progress_path)):
                raise LeaseLost(f"request {item.id} was answered by another reviewer")
            drop = self.drop_path(row)
            private_file(drop)  # request text: owner-only
            append_jsonl(drop, [row])  # the answer first (fsynced) ...
            self._progress(item, ANSWERED, drop=drop.relative_to(self.workspace.root).as_posix())  # ... then "done"
            self._answered.add(item.id)
            self._unlease(item.id)

    def skip(self, item: ReviewItem) -> None:
        with self._locked():
            self._progress(item, SKIPPED)
            self._seen.add(item.id)
            self._last_skipped = item.id
            self._unlease(item.id)

    def release(self, item: ReviewItem) -> None:
        with self._locked():
            self._seen.discard(item.id)  # nothing recorded: it is shown first on the next start
            self._unlease(item.id)

    def undo(self) -> ReviewItem | None:
        """Take back this holder's last answer: the row leaves its drop, the item is leased back to the holder."""
        with self._locked():
            progress = read_jsonl(self.progress_path)
            answered = self._replay(progress)
            last = next(
                (row for row in reversed(progress) if row.get("holder") == self.holder and row.get("status") == ANSWERED and str(row.get("id")) in answered),
                None,
            )
            if last is None:
                return None
            item_id = str(last["id"])
            # where the answer went, relative to the workspace (older progress rows name a file in annotations/)
            recorded = str(last.get("drop") or "")
            drop = self.workspace.root / recorded if "/" in recorded else self.workspace.path("annotations", recorded)
            self.undone_row = None  # the answer taken back (the console names its label)
            if last.get("drop") and drop.is_file():
                rows = read_jsonl(drop)
                self.undone_row = next((row for row in reversed(rows) if str(row.get("id")) == item_id), None)
                kept = [row for row in rows if str(row.get("id")) != item_id]
                write_jsonl_atomic(drop, kept)
                os.chmod(drop, 0o600)
            item = next((i for i in _read_queue(self.queue_path) if i.id == item_id), None)
            if item is None:
                return None
            self._progress(item, UNDONE)
            self._answered.discard(item_id)
            # An undo is a stack: only the request just taken back stays on this holder's screen;
            # one taken back before (not answered again) returns to the queue for anyone.
            leases = self._leases()
            for key in [k for k, lease in leases.items() if lease.get("holder") == self.holder and k != item_id]:
                del leases[key]
                self._seen.discard(key)
            self._lease(leases, item_id)
            return item

    def pending(self) -> int:
        answered = self._answered | self._replay(read_jsonl(self.progress_path))
        return sum(1 for item in _read_queue(self.queue_path) if item.id not in answered)


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
        prefix: str = layout.ANNOTATIONS,
        *,
        sqs: Any = None,
        s3: Any = None,
        kms_key_id: str | None = None,
        visibility_timeout: int = REVIEW_LEASE_SECONDS,
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
                    item = parse_item(json.loads(message["Body"]), handle=message["ReceiptHandle"], raw=message["Body"])
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
        body = dumps_line(row).encode("utf-8")
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

    def unskip(self, item_id: str) -> None:
        """Show a skipped item to this reviewer again (the console's undo of a skip)."""
        self._skipped.discard(item_id)

    def release(self, item: ReviewItem) -> None:
        self._set_visibility(item.handle, 0)  # quitting deletes nothing
