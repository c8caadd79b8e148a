"""`doubts` -> blind re-check -> `settle`, end to end on a workspace (issue 22)."""

from __future__ import annotations

import json

from sav_router.cli import main
from sav_router.data.annotations import load_annotations
from sav_router.loop.workspace import Workspace
from sav_router.review.items import annotation_row
from sav_router.review.recheck import RELABELLED, RecheckQueue, settle
from tests.conftest import read_jsonl, write_jsonl


def answer(workspace, reviewer, label_for):
    queue = RecheckQueue(workspace, holder=reviewer)
    answered = 0
    while (item := queue.next_item()) is not None:
        assert item.label is None and all(score == 0.0 for _, score in item.top_k)  # blind: no earlier label, no suggestion
        queue.ack(item, annotation_row(item, label_for(item), reviewer=reviewer))
        answered += 1
    return answered


def test_doubts_are_found_rechecked_blind_and_settled(tmp_path, tiny_base_model, toy_annotations, capsys, monkeypatch):
    # GIVEN a workspace whose annotations hold a few wrong labels
    rows = read_jsonl(toy_annotations)
    wrong = {row["id"]: row["label"] for row in rows[:8]}
    labels = sorted({row["label"] for row in rows})
    for row in rows[:8]:
        row["label"] = labels[(labels.index(row["label"]) + 1) % len(labels)]
    ws = tmp_path / "ws"
    assert main(["import", str(write_jsonl(tmp_path / "drop.jsonl", rows)), "--workspace", str(ws)]) == 0
    workspace = Workspace(ws)

    # WHEN doubts are listed
    out = tmp_path / "doubts.jsonl"
    assert main(["doubts", "--workspace", str(ws), "--base-model", tiny_base_model, "--output", str(out)]) == 0
    doubts = read_jsonl(out)
    # THEN each carries the given and suspected labels, its evidence, and where it was read (file and line)
    assert doubts and [d["rank"] for d in doubts] == list(range(1, len(doubts) + 1))
    for doubt in doubts:
        source_row = json.loads(open(doubt["file"], encoding="utf-8").read().split("\n")[doubt["line"] - 1])
        assert (source_row["id"], source_row["label"]) == (doubt["id"], doubt["label"])
        assert doubt["suspected_label"] != doubt["label"] and len(doubt["nearest"]) == 3

    # WHEN the three most doubtful go to the re-check queue (twice: nothing is queued twice)
    for _ in range(2):
        assert main(["doubts", "--workspace", str(ws), "--base-model", tiny_base_model, "--format", "review-queue", "--top", "3"]) == 0
    assert "3 doubts queued" in capsys.readouterr().out
    # AND a first reviewer answers blind with the suspected label
    suspected = {d["id"]: d["suspected_label"] for d in doubts[:3]}
    text_to_id = {d["text"]: d["id"] for d in doubts[:3]}
    assert answer(workspace, "ann", lambda item: suspected[text_to_id[item.text]]) == 3
    # THEN settling queues a third opinion for each disagreement, and changes no annotation yet
    assert [s.outcome for s in settle(workspace, by="lead")] == ["third_opinion_queued"] * 3
    assert len(workspace.annotation_files()) == 1
    # WHEN a second reviewer agrees with the first
    assert answer(workspace, "bo", lambda item: suspected[text_to_id[item.text]]) == 3
    results = settle(workspace, by="lead")
    # THEN the rows are relabelled by a new drop that supersedes the old answers, with who and why
    assert [s.outcome for s in results] == [RELABELLED] * 3
    data = load_annotations(workspace.annotation_files())
    by_id = {r.id: r.label for r in data.records}
    assert all(by_id[i] == label for i, label in suspected.items())
    assert {s.request for s in data.superseded} == set(suspected)
    drop = [p for p in workspace.annotation_files() if "-recheck-" in p.name][0]
    assert all(row["settled_by"] == ["ann", "bo", "lead"] and row["previous_label"] for row in read_jsonl(drop))
    # AND nothing is left to settle
    assert settle(workspace, by="lead") == []
    # (the planted errors are what confident learning is for; the tiny random model here only proves the plumbing)
    assert wrong


def test_the_terminal_review_answers_the_recheck_queue(tmp_path, tiny_base_model, toy_annotations, monkeypatch, capsys):
    ws = tmp_path / "ws"
    assert main(["import", str(toy_annotations), "--workspace", str(ws)]) == 0
    assert main(["doubts", "--workspace", str(ws), "--base-model", tiny_base_model, "--format", "review-queue", "--top", "1",
                 "--similarity", "0.5"]) == 0
    monkeypatch.setattr("builtins.input", lambda prompt: "1")
    assert main(["review", "--queue", "recheck", "--workspace", str(ws), "--limit", "1", "--reviewer", "ann"]) == 0
    assert "1 answered" in capsys.readouterr().out
    answers = list((ws / "review" / "recheck").glob("answers-*.jsonl"))
    assert len(answers) == 1 and read_jsonl(answers[0])[0]["source"] == "recheck"
