"""`sav-router import`: bring outside annotations into the workspace as a drop.

Label Studio exports (JSON / JSON-MIN) and plain JSONL / CSV files go through
the same validation as every annotation file (`sav_router.data.annotations`):
bad rows are kept aside in a rejects file, never silently dropped, and the
import fails only when nothing is valid.

    annotations/<stamp>-<source>-<split>.jsonl           id, text, label, split, source
    review/rejects/<stamp>-<source>-<split>.rejects.jsonl   file, line, reason, detail
                                      (outside annotations/: a drop there starts training)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sav_router.data.annotations import (
    BAD_SPLIT,
    INVALID_LABEL,
    SPLIT_TAGS,
    TEACH,
    Columns,
    NoValidDataError,
    Record,
    Reject,
    deduplicate,  # the core's duplicate / conflict rule, shared on purpose
    label_problem,
    read_rows,
    supersede,  # newest answer per request wins, as at training time
    write_rejects,
)
from sav_router.data.labelstudio import export_warnings, is_export, read_export
from sav_router.core.jsonio import write_jsonl_atomic
from sav_router.core.clock import stamp
from sav_router.loop.workspace import Workspace

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # no "-": it separates stamp, source and split


class ImportUsageError(ValueError):
    """Bad arguments to an import (unknown split, unsafe source name, missing file)."""


@dataclass
class ImportResult:
    path: Path  # the annotation drop written
    rejects_path: Path | None
    imported: int
    rejected: int
    split: str
    format: str  # "label-studio", "jsonl" or "csv"
    labels: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    superseded: int = 0  # earlier answers in this file replaced by newer ones (recorded, not rejected)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"imported {self.imported} {self.split} annotations ({self.format}) -> {self.path}"
        if self.superseded:
            line += f"; {self.superseded} earlier answers superseded by newer ones for the same request"
        if self.rejected:
            shown = ", ".join(f"{reason}={n}" for reason, n in sorted(self.reasons.items()))
            line += f"; {self.rejected} rejected ({shown}) -> {self.rejects_path}"
        return "\n".join([line] + [f"warning: {w}" for w in self.warnings])


def _check_arguments(path: Path, split: str, source: str) -> None:
    if split not in SPLIT_TAGS:
        raise ImportUsageError(f"unknown split {split!r} (use teach or check)")
    if not _SOURCE_NAME.match(source):
        raise ImportUsageError(f"--source must be letters, digits or _ (got {source!r})")
    if not path.is_file():
        raise ImportUsageError(f"{path}: no such file")


def _read(path: Path, split: str, columns: Columns) -> tuple[list[Record], list[Reject], str]:
    if is_export(path):
        records, rejects = read_export(path, columns=columns, split=split)
        kept = []
        for record in records:  # the same label rule as annotation files (read_rows)
            problem = label_problem(record.label) if record.label else None
            if problem is not None:
                rejects.append(Reject(record.source, record.line, INVALID_LABEL, problem))
            else:
                kept.append(record)
        return kept, rejects, "label-studio"
    records, rejects = read_rows(path, columns=columns, default_split=split)
    # A row tagged for the other split keeps its tag out of this drop: moving a
    # held-out `check` row into `teach` would leak it into training.
    kept = []
    for record in records:
        if record.split != split:
            rejects.append(Reject(record.source, record.line, BAD_SPLIT, f"tagged {record.split!r}, imported as {split!r}"))
        else:
            kept.append(record)
    return kept, rejects, "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"


def import_annotations(
    workspace: Workspace,
    path: str | os.PathLike[str],
    *,
    split: str = TEACH,
    source: str = "import",
    columns: Columns = Columns(),
) -> ImportResult:
    """Validate `path` and write its valid rows as one `split` drop in `annotations/`."""
    path = Path(path)
    _check_arguments(path, split, source)
    records, rejects, kind = _read(path, split, columns)
    warnings = export_warnings(path) if kind == "label-studio" else []
    records, superseded = supersede(records)
    kept, dedup_rejects = deduplicate(records)
    rejects.extend(dedup_rejects)
    if not kept:
        shown = "; ".join(str(reject) for reject in rejects[:3])
        raise NoValidDataError(f"no valid annotated row in {path}" + (f" (e.g. {shown})" if shown else ""))
    name = f"{stamp()}-{source}-{split}"
    drop = workspace.ensure().path("annotations", f"{name}.jsonl")
    write_jsonl_atomic(drop, ({"id": r.id, "text": r.text, "label": r.label, "split": split, "source": source} for r in kept))  # whole or absent: a drop starts the AWS pipeline
    rejects_path = write_rejects(rejects, workspace.path("review", "rejects", f"{name}.rejects.jsonl")) if rejects else None
    return ImportResult(
        path=drop,
        rejects_path=rejects_path,
        imported=len(kept),
        rejected=len(rejects),
        split=split,
        format=kind,
        labels=Counter(r.label for r in kept if r.label),
        reasons=Counter(r.reason for r in rejects),
        superseded=len(superseded),
        warnings=warnings,
    )
