"""The /invocations wire format: parse and validate request bodies, encode answers.

Pure Python, no web framework, so the rules are unit-testable and the same
for every caller.

Requests
  application/json       one request {"text": ..., "id": ...} or {"instances": [request, ...]}
  application/jsonlines  one request a line (Batch Transform, SplitType=Line)

Rules (documented in the README's serving section and relied on by the Lambda)
  * `text` must be a string; a blank string is a valid request answered with an
    `empty_text` escalation (a human must see it; the caller keeps one code path).
  * `id` is optional: a string, an integer or null; echoed back as given.
  * In a list (instances or lines) a bad item is answered in place with
    {"id": ..., "error": "..."} and the good items are still answered (200);
    if no item is good the whole request is a 400. A single bad request is a 400.
  * JSON Lines answers have exactly one line per input line, in order (a bad line
    gets an error line), so AssembleWith=Line and JoinSource=Input line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sav_router.core.jsonio import dumps, loads, split_lines

JSON = "application/json"
JSONLINES = "application/jsonlines"
MEDIA_TYPES = {
    JSON: JSON,
    "text/json": JSON,
    JSONLINES: JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/x-ndjson": JSONLINES,
}
ANY = ("*/*", "application/*")


class RequestError(Exception):
    """A client error: HTTP status, a stable code and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str, *, items: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.items = items

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.items is not None:
            body["predictions"] = self.items
        return body


@dataclass(frozen=True)
class Item:
    """One request of a body: a text to route, or the reason it cannot be."""

    id: Any = None
    text: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Parsed:
    items: list[Item]
    single: bool  # a lone {"text": ...} request, answered with a lone record


def _media(header: str | None, *, default: str | None) -> tuple[str | None, dict[str, str]]:
    if header is None or not header.strip():
        return default, {}
    kind, *params = header.split(";")
    parameters = {}
    for param in params:
        key, _, value = param.partition("=")
        parameters[key.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), parameters


def content_type(header: str | None) -> str:
    """The canonical request format, or 415. A missing header means JSON (curl's default)."""
    kind, parameters = _media(header, default=JSON)
    if kind not in MEDIA_TYPES:
        raise RequestError(415, "unsupported_media_type", f"unsupported content type {kind!r}; use {JSON} or {JSONLINES}")
    charset = parameters.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise RequestError(415, "unsupported_media_type", f"unsupported charset {charset!r}; send UTF-8")
    return MEDIA_TYPES[kind]


def accept_type(header: str | None, request_type: str) -> str:
    """The answer's format: the first acceptable type listed, else the request's own format; 406 if none fits."""
    if header is None or not header.strip():
        return request_type
    for part in header.split(","):
        kind, _ = _media(part, default=None)
        if kind in ANY:
            return request_type
        if kind in MEDIA_TYPES:
            return MEDIA_TYPES[kind]
    raise RequestError(406, "not_acceptable", f"cannot answer in {header!r}; accept {JSON} or {JSONLINES}")


def _valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. "\ud800" in the JSON
        return False
    return True


def parse_item(value: Any) -> Item:
    """Validate one request object; never raises."""
    if not isinstance(value, dict):
        return Item(error=f"a request must be a JSON object with a 'text' field, got {_type_name(value)}")
    record_id = value.get("id")
    if record_id is not None and (isinstance(record_id, bool) or not isinstance(record_id, (str, int))):
        return Item(error=f"'id' must be a string, an integer or null, got {_type_name(record_id)}")
    if isinstance(record_id, str) and not _valid_unicode(record_id):
        return Item(error="'id' is not valid Unicode (lone surrogate)")
    if "text" not in value:
        return Item(id=record_id, error="missing 'text'")
    text = value["text"]
    if not isinstance(text, str):
        return Item(id=record_id, error=f"'text' must be a string, got {_type_name(text)}")
    if not _valid_unicode(text):
        return Item(id=record_id, error="'text' is not valid Unicode (lone surrogate)")
    return Item(id=record_id, text=text)


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _loads(text: str) -> Any:
    try:
        return loads(text)  # duplicate keys refused: which value would win is a guess
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "invalid_encoding", f"body is not valid UTF-8 (byte {exc.start})") from None


def parse_json(body: bytes) -> Parsed:
    try:
        value = _loads(_decode(body))
    except ValueError as exc:
        raise RequestError(400, "malformed_json", f"malformed JSON: {exc}") from None
    if isinstance(value, dict) and "instances" in value:
        instances = value["instances"]
        if not isinstance(instances, list):
            raise RequestError(400, "invalid_request", f"'instances' must be an array, got {_type_name(instances)}")
        return Parsed([parse_item(item) for item in instances], single=False)
    item = parse_item(value)
    if item.error is not None:
        raise RequestError(400, "invalid_request", item.error)
    return Parsed([item], single=True)


def parse_jsonlines(body: bytes) -> Parsed:
    text = _decode(body)
    if not text.strip():
        raise RequestError(400, "invalid_request", "empty body: send one JSON request per line")
    return Parsed([_parse_line(line) for line in split_lines(text)], single=False)


def _parse_line(line: str) -> Item:
    if not line.strip():
        return Item(error="empty line")
    try:
        value = _loads(line)
    except ValueError as exc:
        return Item(error=f"malformed JSON: {exc}")
    return parse_item(value)


def parse_body(body: bytes, media_type: str) -> Parsed:
    return parse_jsonlines(body) if media_type == JSONLINES else parse_json(body)


def error_record(item: Item) -> dict[str, Any]:
    return {"id": item.id, "error": item.error}


def encode(records: list[dict[str, Any]], *, single: bool, media_type: str) -> bytes:
    """A lone record, {"predictions": [...]} or one line per record."""
    if media_type == JSONLINES:
        return "".join(_dumps(record) + "\n" for record in records).encode("utf-8")
    return _dumps(records[0] if single else {"predictions": records}).encode("utf-8")


def _dumps(value: Any) -> str:
    return dumps(value, compact=True)
