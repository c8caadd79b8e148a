"""Issue 11 item 7 and the low findings: one bad annotation row is a reject with file, line and reason; the run goes on."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sav_router.data.annotations import (
    INVALID_LABEL,
    MALFORMED,
    NoValidDataError,
    TEXT_TOO_LONG,
    load_annotations,
    read_rows,
)

GOOD = {"text": "where is my parcel", "label": "delivery"}


def jsonl(tmp_path, lines, name="rows.jsonl", prefix=b""):
    path = tmp_path / name
    path.write_bytes(prefix + "".join(line + "\n" for line in lines).encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"text": "x", "label": "a", "n": ' + "9" * 5000 + "}", "digits"),
    ],
)
def test_a_jsonl_row_python_cannot_parse_is_rejected_alone(tmp_path, bad, reason):
    path = jsonl(tmp_path, [json.dumps(GOOD), bad, json.dumps({"text": "my refund", "label": "refund"})])
    records, rejects = read_rows(path)
    assert [r.line for r in records] == [1, 3]
    assert [(r.source, r.line, r.reason) for r in rejects] == [(str(path), 2, MALFORMED)] and reason in rejects[0].detail


def test_a_csv_field_over_the_csv_limit_is_rejected_alone(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('text,label\nfirst,delivery\n"' + "x" * 200_000 + '",refund\nthird,refund\n', encoding="utf-8")
    records, rejects = read_rows(path)
    assert [(r.text, r.line) for r in records] == [("first", 2), ("third", 4)]
    assert [(r.line, r.reason) for r in rejects] == [(3, MALFORMED)] and "field limit" in rejects[0].detail


def test_an_over_long_text_is_rejected(tmp_path):
    path = jsonl(tmp_path, [json.dumps(GOOD), json.dumps({"text": "y" * 100_000, "label": "delivery"})])
    assert [(r.line, r.reason) for r in read_rows(path)[1]] == [(2, TEXT_TOO_LONG)]


def test_a_jsonl_file_with_a_bom_is_read_like_csv(tmp_path):
    records, rejects = read_rows(jsonl(tmp_path, [json.dumps(GOOD)], prefix=b"\xef\xbb\xbf"))
    assert rejects == [] and records[0].label == "delivery"


def test_tsv_is_split_on_tabs(tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("text\tlabel\nmy parcel, please\tdelivery\n", encoding="utf-8")
    records, rejects = read_rows(path)
    assert rejects == [] and [(r.text, r.label) for r in records] == [("my parcel, please", "delivery")]


@pytest.mark.parametrize("label", ["refund\nnow", "ref\x00und", "refund\u202e", "zero\u200bwidth", "../../etc", "a/b", "..", "x" * 100_000])
def test_a_label_that_cannot_be_a_label_is_rejected(tmp_path, label):
    records, rejects = read_rows(jsonl(tmp_path, [json.dumps(GOOD), json.dumps({"text": "other text", "label": label})]))
    assert len(records) == 1 and [(r.line, r.reason) for r in rejects] == [(2, INVALID_LABEL)]


def test_nan_text_is_not_the_word_nan(tmp_path):
    records, rejects = read_rows(jsonl(tmp_path, [json.dumps(GOOD), '{"text": NaN, "label": "refund"}']))
    assert [r.text for r in records] == ["where is my parcel"] and [r.line for r in rejects] == [2]


# -- properties -------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["text", "label", "id", "split", "x"]), children, max_size=5),
    max_leaves=12,
)
lines = st.one_of(
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
    st.fixed_dictionaries({"text": st.text(max_size=40), "label": st.text(max_size=20)}).map(json.dumps),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(lines, max_size=12), bom=st.booleans())
def test_property_every_jsonl_line_is_a_record_or_a_reject(tmp_path, rows, bom):
    path = jsonl(tmp_path, rows, prefix=b"\xef\xbb\xbf" if bom else b"")
    records, rejects = read_rows(path, require_label=False, allow_empty_text=True)
    # a line is what ends in "\n" (U+2028, \x0b, \x1c... inside a line do not split it)
    non_blank = [i for i, line in enumerate(path.read_text(encoding="utf-8-sig").removesuffix("\n").split("\n"), start=1) if line.strip()]
    assert sorted([r.line for r in records] + [r.line for r in rejects]) == non_blank
    for record in records:
        assert isinstance(record.text, str) and (record.label is None or "\n" not in record.label)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400), kind=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_property_no_byte_sequence_crashes_the_reader(tmp_path, raw, kind):
    path = tmp_path / f"rows.{kind}"
    path.write_bytes(b"text,label\n" + raw if kind == "csv" else raw)
    try:
        result = load_annotations([path])
    except NoValidDataError:
        return  # nothing valid (or no text column): a clear error, not a crash
    assert result.records and all(r.text.strip() for r in result.records)


def test_a_nul_byte_or_an_overlong_id_is_a_reject_with_its_line(tmp_path):
    from sav_router.core.defaults import MAX_ID_CHARS
    from sav_router.data.annotations import ID_TOO_LONG, NUL_IN_TEXT

    path = jsonl(tmp_path, [json.dumps(GOOD), json.dumps({"text": "bad\x00bytes", "label": "refund"}),
                            json.dumps({"id": "x" * (MAX_ID_CHARS + 1), "text": "fine", "label": "refund"})])
    records, rejects = read_rows(path)
    assert len(records) == 1 and [(r.line, r.reason) for r in rejects] == [(2, NUL_IN_TEXT), (3, ID_TOO_LONG)]
