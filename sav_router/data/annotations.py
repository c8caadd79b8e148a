"""Read annotated requests from JSONL or CSV, validate them, keep bad rows aside.

A bad row never stops a run: it is reported with its file, line and reason and
written to a rejects file. Only when no valid row remains does loading fail.
"""

from __future__ import annotations

import csv
import io
import math
import os
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sav_router.core.jsonio import numbered_rows, split_lines, write_jsonl_atomic
from sav_router.core.defaults import MAX_ID_CHARS, MAX_TEXT_CHARS

TEACH = "teach"  # trained on (and calibrated on, when no `calibrate` rows exist)
CALIBRATE = "calibrate"  # calibration only: a random sample of traffic, never trained on
CHECK = "check"  # held out for evaluation only
SPLIT_TAGS = (TEACH, CALIBRATE, CHECK)

# Rejection reasons
EMPTY_TEXT = "empty_text"
MISSING_LABEL = "missing_label"
UNDECODABLE = "undecodable_bytes"
CONFLICTING_LABELS = "conflicting_labels"
DUPLICATE = "duplicate"
BAD_SPLIT = "unknown_split_tag"
MALFORMED = "malformed_row"
INVALID_LABEL = "invalid_label"
TEXT_TOO_LONG = "text_too_long"
NUL_IN_TEXT = "nul_in_text"  # a NUL byte: binary data pasted as text, cut off by C tools downstream
ID_TOO_LONG = "id_too_long"

MAX_LABEL_CHARS = 100
# Control, format (bidi overrides, zero-width), separator, surrogate, private and unassigned characters.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class NoValidDataError(ValueError):
    """Every row of the input was rejected (or there was no row at all)."""


@dataclass(frozen=True)
class Record:
    text: str
    label: str | None
    id: str | None = None
    split: str = TEACH
    source: str = ""
    line: int = 0

    @property
    def key(self) -> str:
        return normalize_text(self.text)


@dataclass(frozen=True)
class Reject:
    source: str
    line: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.source}:{self.line}: {self.reason}{extra}"


@dataclass(frozen=True)
class Superseded:
    """An earlier answer replaced by a newer one for the same request: recorded, not an error."""

    source: str
    line: int
    request: str  # the request id, else the normalized text's first characters
    label: str | None
    by_label: str | None
    by: str  # source:line of the newer answer

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: request {self.request}: {self.label!r} superseded by {self.by_label!r} ({self.by})"


@dataclass
class LoadResult:
    records: list[Record]
    rejects: list[Reject] = field(default_factory=list)
    superseded: list[Superseded] = field(default_factory=list)

    def by_split(self, split: str) -> list[Record]:
        return [r for r in self.records if r.split == split]

    def summary(self) -> str:
        """A short human summary: counts per label and split, rejects per reason."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for record in self.records:
            counts[record.label or "<unlabeled>"][record.split] += 1
        width = max([len(label) for label in counts] + [5])
        lines = [f"{len(self.records)} valid rows, {len(self.rejects)} rejected"]
        tags = [tag for tag in SPLIT_TAGS if tag != CALIBRATE or any(r.split == CALIBRATE for r in self.records)]
        lines.append(f"  {'label':<{width}}" + "".join(f"  {tag:>9}" for tag in tags))
        for label in sorted(counts):
            lines.append(f"  {label:<{width}}" + "".join(f"  {counts[label][tag]:>9}" for tag in tags))
        if self.rejects:
            reasons = Counter(reject.reason for reject in self.rejects)
            lines.append("  rejected: " + ", ".join(f"{reason}={n}" for reason, n in sorted(reasons.items())))
        return "\n".join(lines)


def normalize_text(text: str) -> str:
    """Identity of a text for duplicate and leakage checks."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _has_undecodable(value: str) -> bool:
    # surrogateescape maps undecodable bytes to lone surrogates U+DC80..U+DCFF
    return any("\udc80" <= ch <= "\udcff" for ch in value)


@dataclass(frozen=True)
class Columns:
    """Field names in the input (Banking77's CSV: text_column="text", label_column="category")."""

    text: str = "text"
    label: str = "label"
    id: str = "id"
    split: str = "split"


def label_problem(label: str) -> str | None:
    """Why a label cannot be one (it becomes a team, a queue, a file name in reports), or None."""
    if len(label) > MAX_LABEL_CHARS:
        return f"longer than {MAX_LABEL_CHARS} characters"
    if any(unicodedata.category(ch) in _INVISIBLE for ch in label):
        return "control, bidi or other invisible character"
    if "/" in label or "\\" in label or label in (".", ".."):
        return "looks like a path"
    return None


def _rows_jsonl(raw: bytes) -> Iterable[tuple[int, dict[str, Any] | None, str]]:
    # utf-8-sig: a BOM (Windows editors, Excel exports) is not part of line 1
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    undecodable = {number for number, line in enumerate(split_lines(text), start=1) if _has_undecodable(line)}
    for number, row, problem in numbered_rows(text):  # the one line codec: a line ends in \n, nothing else
        if number in undecodable:
            yield number, None, UNDECODABLE
        elif row is None:
            yield number, None, f"{MALFORMED}: {problem}"
        else:
            yield number, row, ""


def _rows_csv(raw: bytes, columns: Columns, source: str, delimiter: str = ",") -> Iterable[tuple[int, dict[str, Any] | None, str]]:
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if reader.fieldnames is None:
        return
    if columns.text not in reader.fieldnames:
        raise NoValidDataError(
            f"{source}: no column {columns.text!r} (columns: {', '.join(reader.fieldnames)}); "
            "set --text-column / --label-column"
        )
    start = 2
    rows = iter(reader)
    while True:
        number = start
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the csv module's limit (131,072 characters), a NUL...
            start = max(start + 1, reader.line_num + 1)
            yield number, None, f"{MALFORMED}: {exc}"
            continue
        start = reader.line_num + 1
        if None in row:  # more fields than the header
            yield number, None, f"{MALFORMED}: too many fields"
            continue
        values = [v for v in row.values() if isinstance(v, str)]
        if any(_has_undecodable(v) for v in values):
            yield number, None, UNDECODABLE
            continue
        yield number, row, ""


# File types the annotation reader takes, by suffix: every place that picks annotation
# files (the SageMaker channel, the annotation trigger, the dataset step) uses this.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
DATA_SUFFIXES = tuple(FORMATS)
HEADER_FORMATS = ("csv", "tsv")  # formats whose first line is a header, not a row


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise NoValidDataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .csv or .tsv)")
    return FORMATS[suffix]


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN / Infinity (JSON extensions): no text, not "nan"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def read_rows(
    path: str | os.PathLike[str],
    *,
    columns: Columns = Columns(),
    require_label: bool = True,
    default_split: str = TEACH,
    allow_empty_text: bool = False,
) -> tuple[list[Record], list[Reject]]:
    """Parse one file into records and row-level rejects (no cross-row checks).

    With ``allow_empty_text`` a present-but-blank text is kept (as "") so that a
    prediction run can answer it with an ``empty_text`` escalation.
    """
    path = Path(path)
    source = str(path)
    kind = _detect_format(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NoValidDataError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    rows = _rows_jsonl(raw) if kind == "jsonl" else _rows_csv(raw, columns, source, "\t" if kind == "tsv" else ",")
    records: list[Record] = []
    rejects: list[Reject] = []
    for number, row, problem in rows:
        if row is None:
            reason, _, detail = problem.partition(": ")
            rejects.append(Reject(source, number, reason, detail))
            continue
        text = _as_text(row.get(columns.text))
        if text is None or (not text.strip() and not allow_empty_text):
            rejects.append(Reject(source, number, EMPTY_TEXT))
            continue
        if len(text) > MAX_TEXT_CHARS:
            rejects.append(Reject(source, number, TEXT_TOO_LONG, f"{len(text)} characters, at most {MAX_TEXT_CHARS}"))
            continue
        if "\x00" in text:
            rejects.append(Reject(source, number, NUL_IN_TEXT, f"at character {text.index(chr(0)) + 1}"))
            continue
        label = _as_text(row.get(columns.label))
        label = label.strip() if label is not None else None
        if not label:
            if require_label:
                rejects.append(Reject(source, number, MISSING_LABEL))
                continue
            label = None
        elif (problem := label_problem(label)) is not None:
            rejects.append(Reject(source, number, INVALID_LABEL, problem))
            continue
        split = (_as_text(row.get(columns.split)) or default_split).strip().lower()
        if split not in SPLIT_TAGS:
            rejects.append(Reject(source, number, BAD_SPLIT, f"{split!r}, expected one of {', '.join(SPLIT_TAGS)}"))
            continue
        record_id = _as_text(row.get(columns.id))
        if record_id is not None and len(record_id) > MAX_ID_CHARS:
            rejects.append(Reject(source, number, ID_TOO_LONG, f"{len(record_id)} characters, at most {MAX_ID_CHARS}"))
            continue
        records.append(Record(text=text.strip(), label=label, id=record_id, split=split, source=source, line=number))
    return records, rejects


def supersede(records: Sequence[Record]) -> tuple[list[Record], list[Superseded]]:
    """Across drops, the newest answer for a request wins: by request id, else by normalized text.

    Records come in reading order: files in the order given (for the
    workspace's time-stamped drops, the order they arrived), so a later file's
    answer is the newer one. An answer from an earlier file with another label
    is set aside as superseded. Inside one file there is no "newer": two
    labels for one text there stay a conflict for `deduplicate`, and
    same-label copies are exact duplicates.
    """
    def identity(record: Record) -> tuple[str, str]:
        return ("id", record.id) if record.id else ("text", record.key)

    newest: dict[tuple[str, str], Record] = {}
    for record in records:
        newest[identity(record)] = record
    kept: list[Record] = []
    superseded: list[Superseded] = []
    for record in records:
        winner = newest[identity(record)]
        if winner.source != record.source and winner.label != record.label:
            shown = record.id or record.key[:40]
            superseded.append(Superseded(record.source, record.line, shown, record.label, winner.label, f"{winner.source}:{winner.line}"))
            continue
        kept.append(record)
    return kept, superseded


def write_superseded(superseded: Sequence[Superseded], path: str | os.PathLike[str]) -> Path:
    """Superseded answers as JSONL (which answer replaced which)."""
    return write_jsonl_atomic(path, (asdict(row) for row in superseded))


def deduplicate(records: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
    """Drop exact duplicates; reject every copy of a text annotated with two labels."""
    labels_by_key: dict[str, set[str | None]] = defaultdict(set)
    for record in records:
        labels_by_key[record.key].add(record.label)
    kept: list[Record] = []
    rejects: list[Reject] = []
    first_seen: dict[str, Record] = {}
    for record in records:
        labels = labels_by_key[record.key]
        if len(labels) > 1:
            shown = ", ".join(sorted(str(label) for label in labels))
            rejects.append(Reject(record.source, record.line, CONFLICTING_LABELS, shown))
            continue
        first = first_seen.get(record.key)
        if first is not None:
            rejects.append(Reject(record.source, record.line, DUPLICATE, f"same text as {first.source}:{first.line}"))
            continue
        first_seen[record.key] = record
        kept.append(record)
    return kept, rejects


def load_annotations(
    paths: Sequence[str | os.PathLike[str]],
    *,
    columns: Columns = Columns(),
    require_label: bool = True,
    default_split: str = TEACH,
) -> LoadResult:
    """Load and validate several annotation files as one dataset."""
    if not paths:
        raise NoValidDataError("no input file given")
    records: list[Record] = []
    rejects: list[Reject] = []
    for path in paths:
        file_records, file_rejects = read_rows(path, columns=columns, require_label=require_label, default_split=default_split)
        records.extend(file_records)
        rejects.extend(file_rejects)
    records, superseded = supersede(records)
    kept, dedup_rejects = deduplicate(records)
    rejects.extend(dedup_rejects)
    if not kept:
        shown = "; ".join(str(reject) for reject in rejects[:3])
        raise NoValidDataError(f"no valid annotated row in {', '.join(map(str, paths))}" + (f" (e.g. {shown})" if shown else ""))
    return LoadResult(records=kept, rejects=rejects, superseded=superseded)


def write_rejects(rejects: Sequence[Reject], path: str | os.PathLike[str]) -> Path:
    """Rejects as JSONL (file, line, reason): a person can fix and re-drop them."""
    return write_jsonl_atomic(path, (asdict(reject) for reject in rejects))


def read_requests(path: str | os.PathLike[str], *, columns: Columns = Columns()) -> tuple[list[Record], list[Reject]]:
    """Requests to predict: label optional, blank text kept, no de-duplication."""
    return read_rows(path, columns=columns, require_label=False, allow_empty_text=True)
