"""JSON files written so that a crash or a second process never leaves them half done.

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


def dumps_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    path = Path(path)
    _write_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
    return path


def write_jsonl_atomic(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    path = Path(path)
    _write_atomic(path, "".join(dumps_line(row) for row in rows))
    return path


def append_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Append rows (one write, fsynced); start on a fresh line if the file ends mid-line."""
    path = Path(path)
    data = "".join(dumps_line(row) for row in rows).encode("utf-8")
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
