"""Annotations that evolve: the newest answer per request wins across drops, recorded, not an error."""

import json

from sav_router.data.annotations import CONFLICTING_LABELS, load_annotations


def drop(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_corrected_answer_in_a_later_drop_supersedes_the_earlier_one(tmp_path):
    # GIVEN a first drop, then a later one correcting r1 (same id) and r2 (no id: same normalized text)
    first = drop(tmp_path / "20260101T000000Z-ls-teach.jsonl", [
        {"id": "r1", "text": "my card was charged twice", "label": "delivery"},
        {"text": "Where is my parcel", "label": "refund"},
        {"id": "r3", "text": "reset my password", "label": "account"},
    ])
    second = drop(tmp_path / "20260102T000000Z-ls-teach.jsonl", [
        {"id": "r1", "text": "my card was charged twice", "label": "billing"},
        {"text": "where is   my parcel", "label": "delivery"},
    ])
    # WHEN both drops are loaded in time order
    result = load_annotations([first, second])
    # THEN the newer answers win, nothing is rejected, and the superseded ones are recorded
    assert sorted((r.id or "", r.label) for r in result.records) == [("", "delivery"), ("r1", "billing"), ("r3", "account")]
    assert result.rejects == []
    assert [(s.request, s.label, s.by_label) for s in result.superseded] == [("r1", "delivery", "billing"), ("where is my parcel", "refund", "delivery")]
    assert result.superseded[0].by == f"{second}:1"


def test_two_labels_for_one_text_inside_one_drop_stay_a_conflict(tmp_path):
    path = drop(tmp_path / "one.jsonl", [{"text": "charged twice", "label": "billing"}, {"text": "Charged  twice", "label": "refund"}])
    other = drop(tmp_path / "two.jsonl", [{"text": "reset my password", "label": "account"}])
    result = load_annotations([path, other])
    assert [r.reason for r in result.rejects] == [CONFLICTING_LABELS, CONFLICTING_LABELS] and not result.superseded
