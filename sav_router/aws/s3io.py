"""Small S3 helpers for JSON and JSON Lines objects, on the one line codec (`core.jsonio`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from sav_router.core.jsonio import dumps_line, lenient_rows, numbered_rows

# The tag of an object that copies customer text outside traffic/requests/ (the foundation's lifecycle rule expires it).
CUSTOMER_TEXT_TAG = {"sav-router-content": "customer-text"}


def put_json(s3: Any, bucket: str, key: str, data: Any) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"), ContentType="application/json")


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def put_jsonl(s3: Any, bucket: str, key: str, rows: Iterable[Mapping[str, Any]], *, tags: Mapping[str, str] | None = None) -> int:
    """Write rows as one JSON Lines object; `tags` become its S3 object tags (lifecycle rules and policies select on them)."""
    lines = [dumps_line(row) for row in rows]
    extra = {"Tagging": urlencode(dict(tags))} if tags else {}
    s3.put_object(Bucket=bucket, Key=key, Body="".join(lines).encode("utf-8"), ContentType="application/jsonlines", **extra)
    return len(lines)


def get_text(s3: Any, bucket: str, key: str) -> str:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")


def get_jsonl(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """The objects of a JSON Lines object, strict: a line that is not a JSON object raises ValueError naming the key and line."""
    rows = []
    for number, row, problem in numbered_rows(get_text(s3, bucket, key)):
        if row is None:
            raise ValueError(f"s3://{bucket}/{key}:{number}: {problem}")
        rows.append(row)
    return rows


def get_jsonl_lenient(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """The readable objects of a JSON Lines object; a torn line (a crash mid-write) is passed over."""
    return list(lenient_rows(get_text(s3, bucket, key)))


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under `prefix` (key, size, etag...), across pages."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])
