"""Request parsing rules without the web stack."""

from __future__ import annotations

import json

import pytest

from sav_router.serving.protocol import JSON, JSONLINES, RequestError, accept_type, content_type, encode, parse_body, parse_item


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, JSON), ("", JSON), ("application/json", JSON), ("Application/JSON; charset=UTF-8", JSON), ("application/jsonlines", JSONLINES), ("application/x-ndjson", JSONLINES)],
)
def test_content_types(header, expected):
    assert content_type(header) == expected


@pytest.mark.parametrize("header", ["text/csv", "application/octet-stream", "application/json; charset=utf-16", "nonsense"])
def test_unsupported_content_types(header):
    with pytest.raises(RequestError) as error:
        content_type(header)
    assert error.value.status == 415


def test_accept_defaults_to_the_request_format_and_picks_the_first_supported():
    assert accept_type(None, JSONLINES) == JSONLINES
    assert accept_type("*/*", JSON) == JSON
    assert accept_type("text/html, application/jsonlines;q=0.9", JSON) == JSONLINES
    with pytest.raises(RequestError) as error:
        accept_type("text/html", JSON)
    assert error.value.status == 406


def test_items_validate_text_and_id():
    assert parse_item({"text": "hi", "id": 7}).text == "hi"
    assert parse_item({"text": "", "id": "x"}).error is None  # blank: answered with an empty_text escalation
    assert parse_item({"text": "hi", "id": True}).error.startswith("'id' must be")
    assert parse_item({"text": "hi", "id": 1.5}).error.startswith("'id' must be")
    assert parse_item({"id": "x"}).error == "missing 'text'"
    assert parse_item(["hi"]).error.startswith("a request must be a JSON object")


def test_jsonlines_keeps_one_item_per_line_and_ignores_only_the_final_newline():
    parsed = parse_body(b'{"text": "a"}\n\n{"text": "b"}\r\n', JSONLINES)
    assert [(item.text, item.error) for item in parsed.items] == [("a", None), (None, "empty line"), ("b", None)]


def test_big_integers_and_nan_do_not_escape_validation():
    with pytest.raises(RequestError):
        parse_body(b'{"text": "a", "id": ' + b"9" * 5000 + b"}", JSON)  # beyond Python's int-parsing limit
    with pytest.raises(RequestError, match="'id' must be"):
        parse_body(b'{"text": "a", "id": NaN}', JSON)


def test_encode_formats():
    records = [{"id": 1, "decision": "route"}, {"id": 2, "error": "bad"}]
    assert json.loads(encode(records[:1], single=True, media_type=JSON)) == records[0]
    assert json.loads(encode(records, single=False, media_type=JSON)) == {"predictions": records}
    assert encode(records, single=False, media_type=JSONLINES).decode().splitlines() == [json.dumps(r, separators=(",", ":")) for r in records]
    assert encode([{"id": "é"}], single=True, media_type=JSON).decode("utf-8") == '{"id":"é"}'


def test_json_lines_answers_stay_one_record_per_line_whatever_the_ids_hold():
    # GIVEN ids holding characters that line readers (str.splitlines) treat as line breaks
    records = [{"id": "a\u2028b", "decision": "route"}, {"id": "c\x85d\u2029", "decision": "escalate"}]
    body = encode(records, single=False, media_type=JSONLINES).decode("utf-8")
    # THEN each record is exactly one line, and decodes back to the same values
    assert [json.loads(line) for line in body.splitlines()] == records
