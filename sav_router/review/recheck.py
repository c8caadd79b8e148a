"""The re-check queue: doubted annotations answered blind, disagreements settled by a third answer or an admin.

Files under the workspace's review/:
  recheck.jsonl             the queue: blind items (the text only, no earlier label, no model suggestion)
  recheck.progress.jsonl    who answered, skipped or took back what (as for the review queue)
  recheck.doubts.jsonl      what each re-check is about (the doubted row: id, text, split, label, file, line);
                            never shown to the reviewer
  recheck/answers-*.jsonl   the blind answers: not annotations, so that one disagreeing answer
                            supersedes nothing until the doubt is settled
  recheck.settled.jsonl     how each doubt was settled, by whom and why

Settling (`settle`), per doubt:
- the second opinion agrees with the annotation: confirmed, nothing changes;
- it disagrees: a third opinion is queued (blind again); two answers against the
  annotation relabel the row, two for it confirm it; a third label, or the same reviewer
  answering twice, leaves it to an admin (`settle_by_admin`, with a reason);
- a relabelled row is written as a new annotation drop (`annotations/<stamp>-recheck-<split>.jsonl`),
  same id and text, which supersedes the old answer through the loader's supersede rule
  (the newest drop wins), with who settled it and why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sav_router.core.clock import stamp, utc_now
from sav_router.core.jsonio import append_jsonl, read_jsonl, write_jsonl_atomic
from sav_router.core.traffic import request_key
from sav_router.loop.workspace import Workspace
from sav_router.review.items import RECHECK_SOURCE
from sav_router.review.queue import LocalReviewQueue

RECHECK_QUEUE = "recheck.jsonl"
RECHECK_PROGRESS = "recheck.progress.jsonl"
DOUBTS_FILE = "recheck.doubts.jsonl"
SETTLED_FILE = "recheck.settled.jsonl"
ANSWERS_FOLDER = "recheck"

CONFIRMED, RELABELLED, THIRD_QUEUED, NEEDS_ADMIN, PENDING = "confirmed", "relabelled", "third_opinion_queued", "needs_admin", "pending"


class RecheckQueue(LocalReviewQueue):
    """The re-check queue as a reviewer works it (terminal `review --queue recheck`, the console)."""

    def __init__(self, workspace: Workspace, **options: Any) -> None:
        options.update(queue_file=RECHECK_QUEUE, progress_file=RECHECK_PROGRESS)  # whatever a caller passed (the console's desk passes its own)
        super().__init__(workspace, **options)

    def drop_path(self, row: Mapping[str, Any]):
        return self.workspace.path("review", ANSWERS_FOLDER, f"answers-{self.session}.jsonl")


def doubt_key(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(request_key(row.get("id"), str(row["text"])).encode("utf-8")).hexdigest()[:16]


def item_id(key: str, opinion: int) -> str:
    return f"recheck-{key}-{opinion}"


def _queue_item(workspace: Workspace, doubt: Mapping[str, Any], opinion: int) -> None:
    # blind: every label offered, in alphabetical order, without scores (`audit` items are shown that way)
    choices = [{"label": label, "score": 0.0} for label in doubt["choices"]]
    row = {"id": item_id(doubt["key"], opinion), "text": doubt["text"], "audit": True, "recheck_split": doubt["split"],
           "top_k": choices, "queued_at": utc_now().isoformat(timespec="seconds")}
    append_jsonl(workspace.path("review", RECHECK_QUEUE), [row])


def enqueue(workspace: Workspace, doubts: Iterable[Mapping[str, Any]], labels: Iterable[str]) -> int:
    """Queue doubted rows ({id, text, split, label, file, line, ...}) for a blind second opinion, offering `labels`
    (the reserved out-of-scope answer is always offered too); open ones are not queued twice."""
    from sav_router.core.labels import out_of_scope_label

    choices = sorted(set(labels) | {out_of_scope_label()})
    path = workspace.path("review", DOUBTS_FILE)
    settled = {row.get("key") for row in read_jsonl(workspace.path("review", SETTLED_FILE))}
    open_keys = {row.get("key") for row in read_jsonl(path)} - settled
    added = []
    for doubt in doubts:
        key = doubt_key(doubt)
        if key in open_keys:
            continue
        record = {"key": key, **{k: doubt.get(k) for k in ("id", "text", "split", "label", "file", "line", "suspected_label")},
                  "choices": choices, "queued_at": utc_now().isoformat(timespec="seconds")}
        added.append(record)
        open_keys.add(key)
    append_jsonl(path, added)  # what each re-check is about, first ...
    for record in added:
        _queue_item(workspace, record, 1)  # ... then the blind item
    return len(added)


@dataclass
class Settlement:
    key: str
    id: str | None
    outcome: str
    label: str | None  # the label the row keeps or gets
    previous_label: str | None
    answers: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


def _answers(workspace: Workspace) -> dict[str, dict[str, Any]]:
    folder = workspace.path("review", ANSWERS_FOLDER)
    answers: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("answers-*.jsonl")) if folder.is_dir() else []:
        for row in read_jsonl(path):
            answers[str(row.get("id"))] = row  # the last one read stands (undo removes a taken-back answer from its file)
    return answers


def _outcome(doubt: Mapping[str, Any], answers: Mapping[str, dict[str, Any]], queued: set[str]) -> Settlement:
    old, key = doubt.get("label"), doubt["key"]
    first, second = answers.get(item_id(key, 1)), answers.get(item_id(key, 2))
    given = [{"label": a.get("label"), "reviewer": a.get("reviewer")} for a in (first, second) if a]
    settlement = Settlement(key, doubt.get("id"), PENDING, old, old, given)
    if first is None:
        return settlement
    if first.get("label") == old:
        settlement.outcome, settlement.reason = CONFIRMED, "a blind second opinion agreed with the annotation"
        return settlement
    if second is None:
        settlement.outcome = THIRD_QUEUED if item_id(key, 2) not in queued else PENDING
        return settlement
    if second.get("reviewer") and second.get("reviewer") == first.get("reviewer"):
        settlement.outcome, settlement.reason = NEEDS_ADMIN, "the same reviewer gave both opinions"
    elif second.get("label") == first.get("label"):
        settlement.outcome, settlement.label = RELABELLED, first.get("label")
        settlement.reason = f"two blind opinions ({first.get('reviewer')}, {second.get('reviewer')}) against the annotation"
    elif second.get("label") == old:
        settlement.outcome, settlement.reason = CONFIRMED, "a third opinion agreed with the annotation (2 of 3)"
    else:
        settlement.outcome, settlement.reason = NEEDS_ADMIN, "three different labels"
    return settlement


def open_doubts(workspace: Workspace) -> list[dict[str, Any]]:
    settled = {row.get("key") for row in read_jsonl(workspace.path("review", SETTLED_FILE))}
    return [row for row in read_jsonl(workspace.path("review", DOUBTS_FILE)) if row.get("key") not in settled]


def status(workspace: Workspace) -> list[tuple[dict[str, Any], Settlement]]:
    """Each open doubt with what `settle` would do now (nothing recorded, nothing queued): what an admin sees."""
    answers = _answers(workspace)
    queued = {row.get("id") for row in read_jsonl(workspace.path("review", RECHECK_QUEUE))}
    return [(doubt, _outcome(doubt, answers, queued)) for doubt in open_doubts(workspace)]


def _record(workspace: Workspace, settlements: list[tuple[Mapping[str, Any], Settlement]], by: str) -> None:
    relabels = [(doubt, s) for doubt, s in settlements if s.outcome == RELABELLED]
    by_split: dict[str, list[dict[str, Any]]] = {}
    for doubt, s in relabels:
        by_split.setdefault(str(doubt["split"]), []).append({
            "id": doubt.get("id"), "text": doubt["text"], "label": s.label, "split": doubt["split"], "source": RECHECK_SOURCE,
            "previous_label": s.previous_label, "settled_by": [a["reviewer"] for a in s.answers] + ([by] if by else []),
            "reason": s.reason, "doubted_in": f"{doubt.get('file')}:{doubt.get('line')}",
        })
    name = stamp()
    for split, rows in by_split.items():  # whole or absent: a drop is what starts training
        write_jsonl_atomic(workspace.path("annotations", f"{name}-{RECHECK_SOURCE}-{split}.jsonl"), rows)
    done = [asdict(s) | {"settled_at": utc_now().isoformat(timespec="seconds"), "by": by}
            for _, s in settlements if s.outcome in (CONFIRMED, RELABELLED)]
    append_jsonl(workspace.path("review", SETTLED_FILE), done)


def settle(workspace: Workspace, *, by: str) -> list[Settlement]:
    """Settle what the answers allow; queue third opinions where the second disagreed."""
    answers = _answers(workspace)
    queued = {row.get("id") for row in read_jsonl(workspace.path("review", RECHECK_QUEUE))}
    results = [(doubt, _outcome(doubt, answers, queued)) for doubt in open_doubts(workspace)]
    for doubt, s in results:
        if s.outcome == THIRD_QUEUED:
            _queue_item(workspace, doubt, 2)
    _record(workspace, results, by)
    return [s for _, s in results]


def settle_by_admin(workspace: Workspace, key_or_id: str, label: str, *, by: str, reason: str) -> Settlement:
    """An admin's word on an open doubt (a third label, or the same reviewer twice): recorded with who and why."""
    if not reason.strip():
        raise ValueError("settling a doubt by hand needs a reason")
    doubt = next((d for d in open_doubts(workspace) if key_or_id in (d.get("key"), d.get("id"))), None)
    if doubt is None:
        raise ValueError(f"no open doubt {key_or_id!r}")
    answers = _answers(workspace)
    given = [{"label": a.get("label"), "reviewer": a.get("reviewer")} for a in (answers.get(item_id(doubt["key"], n)) for n in (1, 2)) if a]
    old = doubt.get("label")
    settlement = Settlement(doubt["key"], doubt.get("id"), CONFIRMED if label == old else RELABELLED, label, old, given, f"admin: {reason}")
    _record(workspace, [(doubt, settlement)], by)
    return settlement
