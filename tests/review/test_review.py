"""The reviewer workflow: the terminal session over the local workspace queue and the AWS SQS queue."""

from __future__ import annotations

import argparse
import json
from collections import deque

import pytest

from sav_router.data.annotations import CHECK, TEACH, load_annotations
from sav_router.review.items import parse_item
from sav_router.review.queue import LocalReviewQueue, SqsReviewQueue, answer_key
from sav_router.cli.options import UsageError as ReviewUsageError
from sav_router.cli.review import add_review_parser
from sav_router.review.session import run_session
from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import Workspace
from tests.conftest import read_jsonl


def queue_item(request_id, text, *, top_k=(("refund", 0.55), ("delivery", 0.30), ("warranty", 0.05)), audit=False, reasons=("low_confidence",)):
    """What `route` appends to review/queue.jsonl: a decision record plus text, audit, queued_at."""
    label, confidence = top_k[0]
    return {
        "id": request_id,
        "decision": "route" if audit else "escalate",
        "label": label,
        "team": label,
        "confidence": confidence,
        "reasons": [] if audit else list(reasons),
        "top_k": [{"label": l, "score": s} for l, s in top_k],
        "model_version": "v1",
        "ood_score": 0.1,
        "scores": dict(top_k),
        "text": text,
        "audit": audit,
        "queued_at": "2026-01-05T10:00:00+00:00",
    }


class Terminal:
    """Scripted reviewer input and captured screen output (no TTY needed)."""

    def __init__(self, *answers):
        self.answers = deque(answers)
        self.screen: list[str] = []

    def ask(self, prompt):
        self.screen.append(prompt)
        if not self.answers:
            raise EOFError  # the reviewer closed the terminal
        return self.answers.popleft()

    def say(self, line):
        self.screen.append(line)

    @property
    def text(self):
        return "\n".join(self.screen)


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path / "ws").ensure()


def enqueue(workspace, *items):
    append_jsonl(workspace.path("review", "queue.jsonl"), items)


def answers(workspace, pattern="*.jsonl"):
    rows = []
    for path in sorted(workspace.path("annotations").glob(pattern)):
        rows += read_jsonl(path)
    return rows


def review(workspace, *typed, known=None, limit=None):
    terminal = Terminal(*typed)
    result = run_session(LocalReviewQueue(workspace), known_labels=known, ask=terminal.ask, say=terminal.say, limit=limit, reviewer="ana")
    return result, terminal


# -- local queue ---------------------------------------------------------------
def test_pick_by_number_type_a_label_confirm_an_unknown_one_and_skip(workspace):
    # GIVEN four escalated requests
    enqueue(workspace, *(queue_item(f"r{i}", f"request number {i}") for i in range(1, 5)))
    # WHEN the reviewer picks #2, types a known label in other case, confirms a new label, skips the last
    result, terminal = review(workspace, "2", "WARRANTY", "gift_card", "y", "s", known=["refund", "delivery", "warranty"])
    # THEN three answers are teach annotations with provenance, the skip is not an answer
    assert (result.answered, result.skipped, result.quit) == (3, 1, False)
    rows = answers(workspace)
    assert [(r["id"], r["label"], r["split"], r["source"]) for r in rows] == [
        ("r1", "delivery", TEACH, "review"),
        ("r2", "warranty", TEACH, "review"),
        ("r3", "gift_card", TEACH, "review"),
    ]
    assert rows[0]["model_label"] == "refund" and rows[0]["reviewer"] == "ana" and rows[0]["reasons"] == ["low_confidence"]
    # AND the screen showed the text, the reason and the numbered suggestions with scores
    assert "request number 1" in terminal.text and "escalated: low_confidence" in terminal.text
    assert "1. refund    0.55" in terminal.text and "2. delivery  0.30" in terminal.text
    assert "'gift_card' is not a known label" in terminal.text
    # AND the answers are a valid annotation drop for the core loader
    assert len(load_annotations(sorted(workspace.path("annotations").glob("*.jsonl"))).records) == 3


def test_invalid_input_is_asked_again(workspace):
    enqueue(workspace, queue_item("r1", "text"))
    # GIVEN a reviewer who types help, an out-of-range number, blank, and declines an unknown label
    result, terminal = review(workspace, "?", "9", "", "refnud", "n", "1")
    # THEN nothing is recorded until a valid answer, which is then the one kept
    assert result.answered == 1 and [r["label"] for r in answers(workspace)] == ["refund"]
    assert "s         skip" in terminal.text and "no suggestion 9" in terminal.text


def test_quitting_midway_loses_nothing_and_a_restart_resumes(workspace):
    # GIVEN five queued requests
    enqueue(workspace, *(queue_item(f"r{i}", f"text {i}") for i in range(1, 6)))
    # WHEN the reviewer answers two, skips one and quits on the fourth
    first, _ = review(workspace, "1", "2", "s", "q")
    assert (first.answered, first.skipped, first.quit) == (2, 1, True)
    assert [r["id"] for r in answers(workspace)] == ["r1", "r2"]  # both answers are on disk already
    # AND restarts: the quit one comes first, unseen ones next, the skipped one last
    second, terminal = review(workspace, "1", "1", "1")
    shown = [line.split()[2] for line in terminal.screen if line.startswith("[")]
    assert shown == ["r4", "r5", "r3"]
    # THEN every request is answered exactly once
    assert sorted(r["id"] for r in answers(workspace)) == ["r1", "r2", "r3", "r4", "r5"]
    assert second.answered == 3 and LocalReviewQueue(workspace).next_item() is None


def test_closing_the_terminal_is_a_quit(workspace):
    enqueue(workspace, queue_item("r1", "a"), queue_item("r2", "b"))
    result, _ = review(workspace, "1")  # then EOF (Ctrl-D)
    assert result.quit and [r["id"] for r in answers(workspace)] == ["r1"]
    assert LocalReviewQueue(workspace).next_item().id == "r2"


def test_an_answer_saved_just_before_a_crash_is_not_asked_again(workspace):
    # GIVEN an answer in a drop whose progress line was never written (crash between the two writes)
    enqueue(workspace, queue_item("r1", "a"), queue_item("r2", "b"))
    append_jsonl(workspace.path("annotations", "20260105T100000000000Z-review-teach.jsonl"), [{"id": "r1", "text": "a", "label": "refund", "split": "teach", "source": "review"}])
    # THEN the restarted queue starts with r2
    assert LocalReviewQueue(workspace).next_item().id == "r2"


def test_new_items_queued_during_a_session_are_picked_up_and_bad_lines_left_aside(workspace):
    # GIVEN a queue with a malformed line, an item without text and one without id
    path = workspace.path("review", "queue.jsonl")
    path.write_text('{broken\n{"id": "x", "text": ""}\n' + json.dumps(queue_item(None, "no id here")) + "\n", encoding="utf-8")
    queue = LocalReviewQueue(workspace)
    first = queue.next_item()
    assert first.text == "no id here" and first.id.startswith("text-")  # a stable id derived from the text
    # WHEN `route` queues another item meanwhile
    enqueue(workspace, queue_item("late", "arrived later"))
    # THEN the same session gets it
    assert queue.next_item().id == "late" and queue.next_item() is None


def test_limit_stops_the_session(workspace):
    enqueue(workspace, *(queue_item(f"r{i}", f"t{i}") for i in range(3)))
    result, _ = review(workspace, "1", "1", "1", limit=2)
    assert result.answered == 2 and not result.quit


def test_request_text_cannot_drive_the_terminal(workspace):
    # GIVEN a request text with an ANSI escape sequence
    enqueue(workspace, queue_item("r1", "hi \x1b[2J\x1b]0;pwned\x07 there"))
    _, terminal = review(workspace, "q")
    # THEN no control character reaches the screen
    assert "\x1b" not in terminal.text and "\x07" not in terminal.text and "hi" in terminal.text


# -- audit samples -------------------------------------------------------------
def test_audit_answers_are_blind_check_annotations_never_teach(workspace):
    # GIVEN an escalation and an audit sample of a confidently routed request
    enqueue(
        workspace,
        queue_item("e1", "escalated one"),
        queue_item("a1", "routed one", top_k=(("warranty", 0.97), ("delivery", 0.02), ("account", 0.01)), audit=True),
    )
    # WHEN the reviewer answers both
    _, terminal = review(workspace, "1", "3")
    # THEN the audit sample was shown blind: alphabetical candidates, no scores, no reasons
    audit_screen = terminal.text.split("[2]")[1]
    assert "audit sample" in audit_screen and "0.97" not in audit_screen
    assert [line.split()[1] for line in audit_screen.splitlines() if line.startswith("  ") and line.strip()[0].isdigit()] == ["account", "delivery", "warranty"]
    # AND the audit answer is a check annotation with source audit and the routed label kept
    (audit,) = answers(workspace, "*-audit-check.jsonl")
    assert (audit["id"], audit["label"], audit["split"], audit["source"], audit["model_label"]) == ("a1", "warranty", CHECK, "audit", "warranty")
    # AND no audit label is ever in teach, whatever the loader sees
    data = load_annotations(sorted(workspace.path("annotations").glob("*.jsonl")))
    assert {r.id for r in data.by_split(TEACH)} == {"e1"}
    assert {r.id for r in data.by_split(CHECK)} == {"a1"}


def test_known_labels_come_from_the_production_model(workspace, tmp_path):
    from sav_router.core.bundle import Manifest, write_manifest
    from sav_router.core.policy import RoutingPolicy
    from sav_router.review.session import known_labels_for

    # GIVEN a production model with its labels
    bundle = tmp_path / "bundle"
    write_manifest(bundle, Manifest(labels=["refund", "lost_card"], policy=RoutingPolicy(threshold=0.9), base_model="x", model_version="v1", created_at="2026-01-01T00:00:00+00:00"))
    workspace.promote(workspace.register(bundle))
    # THEN they are the known labels (a typed "lost_card" needs no confirmation), else None
    assert known_labels_for(None, workspace) == ["refund", "lost_card"]
    assert known_labels_for(str(bundle), Workspace(tmp_path / "empty")) == ["refund", "lost_card"]
    assert known_labels_for(None, Workspace(tmp_path / "empty")) is None


def test_lambda_envelope_is_a_queue_item():
    item = parse_item({"request": {"id": "r1", "text": "hello"}, "decision": queue_item("ignored", "ignored"), "audit": True})
    assert (item.id, item.text, item.audit, item.label, item.top_k[0]) == ("r1", "hello", True, "refund", ("refund", 0.55))


# -- AWS SQS queue -------------------------------------------------------------
@pytest.fixture
def aws(monkeypatch):
    moto = pytest.importorskip("moto")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        import boto3

        sqs, s3 = boto3.client("sqs", region_name="eu-west-1"), boto3.client("s3", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="review")["QueueUrl"]
        s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield sqs, s3, url


def send(sqs, url, body):
    sqs.send_message(QueueUrl=url, MessageBody=body if isinstance(body, str) else json.dumps(body))


def sqs_queue(sqs, s3, url, **kwargs):
    return SqsReviewQueue(url, "artifacts", sqs=sqs, s3=s3, wait_seconds=0, **kwargs)


def visible(sqs, url):
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_sqs_answer_goes_to_s3_before_the_message_is_deleted(aws):
    sqs, s3, url = aws
    # GIVEN an escalation (the routing Lambda's envelope) and an audit sample on the review queue
    send(sqs, url, {"request": {"id": "r1", "text": "where is my parcel"}, "decision": queue_item("r1", "x")})
    send(sqs, url, queue_item("a1", "routed", audit=True))
    # WHEN a reviewer answers both, with a KMS key configured
    terminal = Terminal("2", "refund")
    result = run_session(sqs_queue(sqs, s3, url, kms_key_id="alias/sav-router"), ask=terminal.ask, say=terminal.say)
    # THEN each answer is a small JSONL object under annotations/review/, encrypted with the key
    assert result.answered == 2
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix="annotations/review/")["Contents"])
    assert [k.split("/")[-1].rsplit("-", 1)[0] for k in keys] == ["audit-check", "review-teach"]
    head = s3.head_object(Bucket="artifacts", Key=keys[1])
    assert head["ServerSideEncryption"] == "aws:kms" and "sav-router" in head["SSEKMSKeyId"]
    row = json.loads(s3.get_object(Bucket="artifacts", Key=keys[1])["Body"].read())
    assert (row["id"], row["text"], row["label"], row["split"]) == ("r1", "where is my parcel", "delivery", TEACH)
    # AND the messages are gone
    assert visible(sqs, url) == 0 and sqs_queue(sqs, s3, url).next_item() is None


def test_sqs_skip_hands_the_request_to_another_reviewer_and_quit_deletes_nothing(aws):
    sqs, s3, url = aws
    send(sqs, url, queue_item("r1", "first"))
    # WHEN reviewer A skips it
    a = sqs_queue(sqs, s3, url)
    a.skip(a.next_item())
    # THEN it is visible again at once: A does not get it back, reviewer B does
    assert a.next_item() is None
    b = sqs_queue(sqs, s3, url)
    item = b.next_item()
    assert item.id == "r1"
    # WHEN B quits while it is on screen
    terminal = Terminal("q")
    b.release(item)
    result = run_session(sqs_queue(sqs, s3, url), ask=terminal.ask, say=terminal.say)
    # THEN nothing was deleted or written: the request is still there for the next reviewer
    assert result.quit and visible(sqs, url) == 1
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts", Prefix="annotations/")


def test_sqs_unreviewable_messages_are_left_for_the_dead_letter_queue(aws):
    sqs, s3, url = aws
    send(sqs, url, "{not json")
    send(sqs, url, {"id": "x", "text": "  "})
    queue = sqs_queue(sqs, s3, url)
    assert queue.next_item() is None and queue.unreviewable == 2
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 2  # hidden, not deleted


def test_answer_key_is_stable_per_request():
    row = {"id": "r1", "source": "review", "split": "teach"}
    assert answer_key("annotations/", row) == answer_key("annotations/", dict(row))
    assert answer_key("annotations/", row) != answer_key("annotations/", row | {"id": "r2"})
    assert answer_key("annotations/", row).startswith("annotations/review/review-teach-")


# -- command line --------------------------------------------------------------
def test_review_command_line(workspace, monkeypatch, capsys):
    parser = argparse.ArgumentParser(prog="sav-router")
    add_review_parser(parser.add_subparsers(dest="command", required=True))
    # GIVEN an SQS URL without --bucket, or a queue that is neither: usage errors
    with pytest.raises(ReviewUsageError, match="--bucket"):
        args = parser.parse_args(["review", "--queue", "https://sqs.eu-west-1.amazonaws.com/1/review"])
        args.func(args)
    with pytest.raises(ReviewUsageError, match="--queue"):
        args = parser.parse_args(["review", "--queue", "nowhere"])
        args.func(args)
    # WHEN the local queue is reviewed from the command line
    enqueue(workspace, queue_item("r1", "text"))
    monkeypatch.setattr("builtins.input", lambda prompt: "1")
    args = parser.parse_args(["review", "--workspace", str(workspace.root), "--limit", "1", "--reviewer", "bo"])
    # THEN it answers and reports
    assert args.func(args) == 0
    assert "1 answered, 0 skipped" in capsys.readouterr().out
    assert [r["reviewer"] for r in answers(workspace)] == ["bo"]


def test_a_torn_progress_line_does_not_block_a_restart(workspace):
    # GIVEN progress whose last line was cut by a crash mid-append
    enqueue(workspace, queue_item("r1", "a"), queue_item("r2", "b"))
    workspace.path("review", "progress.jsonl").write_text('{"id": "r1", "status": "answered"}\n{"id": "r2", "sta', encoding="utf-8")
    # THEN the queue still opens and resumes after the recorded answer
    assert LocalReviewQueue(workspace).next_item().id == "r2"


def test_o_answers_out_of_scope_and_the_audit_estimate_counts_it_as_a_misroute(workspace):
    from sav_router.core.labels import OUT_OF_SCOPE
    from sav_router.review.audit import estimate_precision

    # GIVEN an escalated off-topic request and a routed one sampled for audit
    enqueue(workspace, queue_item("r1", "what's the weather like"), queue_item("a1", "tell me a joke", audit=True))
    # WHEN the reviewer answers both "none of these" with the o key (and the typed name)
    result, terminal = review(workspace, "o", OUT_OF_SCOPE, known=["refund", "delivery", "warranty"])
    # THEN both are out-of-scope annotations, without a "new label" confirmation
    assert result.answered == 2 and "not a known label" not in terminal.text
    rows = answers(workspace)
    assert sorted((r["id"], r["label"], r["split"]) for r in rows) == [("a1", OUT_OF_SCOPE, CHECK), ("r1", OUT_OF_SCOPE, TEACH)]
    assert "o out of scope" in terminal.text
    # AND the routed request answered out of scope is a misroute in the live precision estimate
    estimate = estimate_precision([r for r in rows if r["source"] == "audit"])
    assert estimate["audited"] == 1 and estimate["correct"] == 0 and estimate["out_of_scope"] == 1
