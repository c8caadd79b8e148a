"""JSON and JSON Lines: the one codec, and files that a crash never leaves half done.

The line codec (every JSON Lines file and S3 object the product writes or reads):
- a line is what ends in `\n` (a trailing `\r` is dropped: CRLF files read the same);
  nothing else splits a line, unlike `str.splitlines()`, which also breaks on
  U+2028, U+2029, U+0085, `\x0b`, `\x0c` and `\x1c`-`\x1e`;
- `dumps_line` escapes every character any line reader might honour as a break
  (JSON escapes the C0 controls already; U+0085, U+2028 and U+2029 are escaped
  here), so one record is always exactly one line, whoever reads it;
- `loads` refuses duplicate keys (which value would win is a guess).

Files:
- `write_json_atomic`: temp file in the same folder, fsync, rename: a reader sees
  the old file or the new one, never a mix.
- `append_jsonl`: every append starts on a fresh line (a torn last line from a
  crash never glues the next record onto it) and is fsynced before returning.
- `locked`: an exclusive `fcntl` lock on `<file>.lock` around a read-modify-write
  (the registry, review progress), so two processes never interleave theirs.

Pure standard library (the routing Lambda may import it).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


# Characters that JSON leaves raw inside strings but that some line readers split on.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(value: Any, *, compact: bool = False) -> str:
    """JSON text with no character a line reader could take for a line break."""
    separators = (",", ":") if compact else None
    return json.dumps(value, ensure_ascii=False, separators=separators).translate(_LINE_BREAKS)


def dumps_line(row: Mapping[str, Any]) -> str:
    return dumps(row) + "\n"


def dumps_lines(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(dumps_line(row) for row in rows)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def loads(text: str | bytes) -> Any:
    """Parse JSON, refusing duplicate keys (ValueError; json.JSONDecodeError is one too)."""
    return json.loads(text, object_pairs_hook=_refuse_duplicates)


def split_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text: split on `\n` only; a final empty piece is not a line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def numbered_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, object or None, problem) for each non-blank line: the strict reader's raw material."""
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            row = loads(line)
        except RecursionError:
            yield number, None, "invalid JSON (nested too deeply)"
            continue
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON ({exc.msg})"
            continue
        except ValueError as exc:  # a duplicate key, an integer over Python's digit limit
            yield number, None, f"invalid JSON ({str(exc)[:80]})"
            continue
        if not isinstance(row, dict):
            yield number, None, "expected a JSON object"
            continue
        yield number, row, ""


def lenient_rows(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON Lines text; a torn or foreign line (a crash mid-append) is passed over."""
    for _, row, _ in numbered_rows(text):
        if row is not None:
            yield row


def positional_rows(text: str) -> list[dict[str, Any] | None]:
    """One entry per line (None where unreadable), for files that pair up by position."""
    rows: list[dict[str, Any] | None] = []
    for line in split_lines(text):
        try:
            row = loads(line)
        except (ValueError, RecursionError):
            row = None
        rows.append(row if isinstance(row, dict) else None)
    return rows


def read_text(path: str | os.PathLike[str]) -> str:
    """A file's text, undecodable bytes replaced; empty when the file does not exist."""
    path = Path(path)
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The readable objects of a JSON Lines file (lenient: torn lines passed over; none if absent)."""
    return list(lenient_rows(read_text(path)))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8") as handle:
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:  # a full disk, a kill: no partial file is left behind, under any name
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a whole text file (a report, a config) so that readers see the old one or the new one."""
    path = Path(path)
    _write_atomic(path, text)
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    path = Path(path)
    _write_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")
    return path


def write_jsonl_atomic(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    path = Path(path)
    _write_atomic(path, dumps_lines(rows))
    return path


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Append rows (one write, fsynced); start on a fresh line if the file ends mid-line."""
    path = Path(path)
    data = dumps_lines(rows).encode("utf-8")
    if not data:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                data = b"\n" + data  # the torn line stays as it was (unreadable, reported), ours is whole
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return data.count(b"\n") - (1 if data.startswith(b"\n") else 0)


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (blocks until the other holder is done)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
