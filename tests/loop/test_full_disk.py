"""A full disk is one line and exit 2, with nothing partial left where a reader takes it (issue 18, finding 8)."""

from __future__ import annotations

import errno
import os

from sav_router.cli import main
from tests.conftest import write_jsonl


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_import_on_a_full_disk_says_so_and_leaves_no_partial_drop(tmp_path, monkeypatch, capsys):
    # GIVEN annotations to import, and a disk that fills up while the drop is written
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": str(i), "text": f"text {i}", "label": "a" if i % 2 else "b"} for i in range(1346)])
    workspace = tmp_path / "ws"
    monkeypatch.setattr("sav_router.core.jsonio.os.fsync", full_disk)
    # WHEN it is imported
    code = main(["import", str(rows), "--workspace", str(workspace)])
    # THEN the command exits 2 with one line naming the cause, not a traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0]
    # AND no drop, whole or torn, is in annotations/ (a drop there would start the AWS pipeline)
    annotations = workspace / "annotations"
    assert not annotations.exists() or list(annotations.iterdir()) == []


def test_import_after_space_is_freed_writes_the_whole_drop(tmp_path, capsys):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": str(i), "text": f"text {i}", "label": "a" if i % 2 else "b"} for i in range(50)])
    assert main(["import", str(rows), "--workspace", str(tmp_path / "ws")]) == 0
    drops = list((tmp_path / "ws" / "annotations").glob("*.jsonl"))
    assert len(drops) == 1 and len(drops[0].read_text().splitlines()) == 50
