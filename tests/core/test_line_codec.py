"""One line codec: whatever any writer emits, every reader reads back the same rows (issue 18, finding 1).

GIVEN arbitrary Unicode (line and paragraph separators, NEL, C0/C1 controls, astral characters)
WHEN rows are written by each of the product's JSON Lines writers
THEN each matching reader returns exactly the rows written, one per line.
"""

from __future__ import annotations

import json

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from sav_router.aws.s3io import get_jsonl, put_jsonl
from sav_router.core.jsonio import append_jsonl, dumps_line, lenient_rows, loads, read_jsonl, split_lines, write_jsonl_atomic
from sav_router.data.annotations import read_rows
from sav_router.serving.protocol import JSONLINES, parse_body

BREAKERS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
texts = st.text(alphabet=st.sampled_from(BREAKERS) | st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
rows = st.lists(st.fixed_dictionaries({"id": texts, "text": texts}), min_size=1, max_size=8)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows=rows)
def test_a_written_line_never_holds_a_character_a_line_reader_splits_on(rows):
    for row in rows:
        line = dumps_line(row)
        assert line.endswith("\n") and len(line.splitlines()) == 1  # even str.splitlines() sees one line
        assert loads(line) == row


@SETTINGS
@given(rows=rows)
def test_files_round_trip(tmp_path, rows):
    appended, atomic = tmp_path / "appended.jsonl", tmp_path / "atomic.jsonl"
    appended.unlink(missing_ok=True)
    append_jsonl(appended, rows[:1])
    append_jsonl(appended, rows[1:])
    write_jsonl_atomic(atomic, rows)
    assert read_jsonl(appended) == rows and read_jsonl(atomic) == rows


@SETTINGS
@given(rows=rows)
def test_annotation_files_round_trip(tmp_path, rows):
    rows = [{"id": row["id"], "text": row["text"].replace("\x00", "") + " x"} for row in rows]  # a NUL is refused (its own test)
    path = write_jsonl_atomic(tmp_path / "drop.jsonl", [row | {"label": "refund"} for row in rows])
    records, rejects = read_rows(path, allow_empty_text=True)
    assert rejects == [] and [(r.id, r.text) for r in records] == [(row["id"], row["text"].strip()) for row in rows]


@SETTINGS
@given(rows=rows)
def test_the_server_reads_one_request_a_line(rows):
    body = "".join(dumps_line(row) for row in rows).encode("utf-8")
    parsed = parse_body(body, JSONLINES)
    assert [(item.id, item.text) for item in parsed.items] == [(row["id"], row["text"]) for row in rows]


@mock_aws
def test_s3_objects_round_trip():
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="codec-test", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})

    @SETTINGS
    @given(rows=rows)
    def check(rows):
        put_jsonl(s3, "codec-test", "k.jsonl", rows)
        assert get_jsonl(s3, "codec-test", "k.jsonl") == rows

    check()


def test_crlf_files_read_the_same_and_a_torn_line_is_passed_over():
    text = json.dumps({"a": 1}) + "\r\n" + '{"a": 2' + "\n" + json.dumps({"a": "x\u2028y"}) + "\n"
    assert split_lines(text)[0] == '{"a": 1}'
    assert list(lenient_rows(text)) == [{"a": 1}, {"a": "x\u2028y"}]
