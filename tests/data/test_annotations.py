"""Loading and validating annotation files."""

import json

import pytest

from sav_router.data.annotations import (
    CONFLICTING_LABELS,
    DUPLICATE,
    EMPTY_TEXT,
    MISSING_LABEL,
    UNDECODABLE,
    Columns,
    NoValidDataError,
    load_annotations,
    read_requests,
    write_rejects,
)


def test_jsonl_rows_are_loaded_with_split_and_id(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"id": "1", "text": "where is my parcel", "label": "delivery"}\n'
        '\n'
        '{"id": "2", "text": "refund please", "label": "refund", "split": "check"}\n',
        encoding="utf-8",
    )
    result = load_annotations([path])
    assert [(r.id, r.label, r.split, r.line) for r in result.records] == [("1", "delivery", "teach", 1), ("2", "refund", "check", 3)]
    assert result.rejects == []


def test_csv_with_configurable_columns(tmp_path):
    path = tmp_path / "b77.csv"
    path.write_text('text,category\n"I am still waiting on my card?",card_arrival\n"multi\nline text",pin_blocked\n', encoding="utf-8")
    result = load_annotations([path], columns=Columns(text="text", label="category"))
    assert [(r.text, r.label, r.line) for r in result.records] == [("I am still waiting on my card?", "card_arrival", 2), ("multi\nline text", "pin_blocked", 3)]


def test_missing_text_column_is_a_clear_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("body,label\nhello,a\n", encoding="utf-8")
    with pytest.raises(NoValidDataError, match="no column 'text'.*--text-column"):
        load_annotations([path])


def test_bad_rows_are_reported_with_file_line_reason_and_the_run_goes_on(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        b'{"text": "my parcel never arrived", "label": "delivery"}',
        b'{"text": "   ", "label": "delivery"}',
        b'{"text": "refund not on my card"}',
        b'{"text": "caf\xe9 order \xff broken", "label": "warranty"}',
        b"{not json",
        b'{"text": "Charged twice", "label": "billing"}',
        b'{"text": "charged   TWICE", "label": "refund"}',
        b'{"text": "my parcel never arrived", "label": "delivery"}',
        b'{"text": "ok", "label": "delivery", "split": "maybe"}',
        b'["a list"]',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = load_annotations([path])
    assert [r.text for r in result.records] == ["my parcel never arrived"]
    reasons = {(reject.line, reject.reason) for reject in result.rejects}
    assert {(2, EMPTY_TEXT), (3, MISSING_LABEL), (4, UNDECODABLE), (5, "malformed_row"), (6, CONFLICTING_LABELS),
            (7, CONFLICTING_LABELS), (8, DUPLICATE), (9, "unknown_split_tag"), (10, "malformed_row")} == reasons
    assert all(reject.source == str(path) for reject in result.rejects)
    assert "rejected" in result.summary() and "delivery" in result.summary()

    out = write_rejects(result.rejects, tmp_path / "rejects.jsonl")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == len(result.rejects) and {"source", "line", "reason", "detail"} <= set(written[0])


def test_duplicates_across_files_keep_the_first(tmp_path):
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.csv"
    first.write_text('{"text": "Where is my order?", "label": "order_status"}\n', encoding="utf-8")
    second.write_text("text,label\nwhere is  my ORDER?,order_status\n", encoding="utf-8")
    result = load_annotations([first, second])
    assert len(result.records) == 1 and result.records[0].source == str(first)
    assert result.rejects[0].reason == DUPLICATE and "a.jsonl:1" in result.rejects[0].detail


def test_nothing_valid_fails_with_a_clear_message(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": ""}\n{"label": "x"}\n', encoding="utf-8")
    with pytest.raises(NoValidDataError, match="no valid annotated row"):
        load_annotations([path])
    with pytest.raises(NoValidDataError, match="unsupported file type"):
        load_annotations([tmp_path / "data.parquet"])


def test_requests_keep_blank_text_for_an_empty_text_answer(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"id": "r1", "text": "hello"}\n{"id": "r2", "text": "  "}\n{"id": "r3"}\n', encoding="utf-8")
    records, rejects = read_requests(path)
    assert [(r.id, r.text) for r in records] == [("r1", "hello"), ("r2", "")]
    assert [(r.line, r.reason) for r in rejects] == [(3, EMPTY_TEXT)]
