"""Label Studio formats: labeling config, tasks with pre-annotations, export parsing.

Label Studio is the self-hosted annotation platform users already run. Tasks
go out with the model's top label as a prediction (pre-annotation); the
project's JSON or JSON-MIN export comes back and becomes `Record`s and
`Reject`s the annotations core understands (`sav_router.data.annotations`).

The request id travels in `data.request_id`, not `data.id`: the JSON-MIN export
overwrites a top-level `id` with Label Studio's own task id.

Pure Python (json, xml escaping only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from sav_router.core.labels import out_of_scope_label
from sav_router.data.annotations import (
    BAD_SPLIT,
    EMPTY_TEXT,
    MALFORMED,
    MISSING_LABEL,
    TEACH,
    UNDECODABLE,
    Columns,
    NoValidDataError,
    Record,
    Reject,
)

FROM_NAME = "label"  # the Choices control: predictions and exports name it
TO_NAME = "text"  # the Text object the choice applies to
REQUEST_ID = "request_id"
CANCELLED = "cancelled_annotations_only"
SEVERAL_CHOICES = "several_choices"
_ROW_KEYS = {"id", "text", "label", "score", "data"}


def labeling_config(
    labels: Sequence[str],
    *,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
    out_of_scope: str | None = None,
) -> str:
    """A single-choice text classification config whose names match our predictions.

    The last choice is always the reserved out-of-scope answer ("none of
    these"), so an off-topic request can be answered instead of skipped.
    """
    if not labels:
        raise ValueError("a labeling config needs at least one label")
    reserved = out_of_scope_label(out_of_scope)
    values = [str(label) for label in labels if str(label) != reserved] + [reserved]
    choices = "\n".join(f"    <Choice value={quoteattr(value)}/>" for value in values)
    return (
        "<View>\n"
        f"  <Text name={quoteattr(to_name)} value={quoteattr('$' + to_name)}/>\n"
        f"  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} choice=\"single\" showInline=\"false\">\n"
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


CONFIG_SUFFIX = ".label_config.xml"  # the labeling config written next to a tasks file


def config_path(tasks_path: str | os.PathLike[str]) -> Path:
    tasks_path = Path(tasks_path)
    return tasks_path.with_name(tasks_path.stem + CONFIG_SUFFIX)


def write_project(tasks_path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], labels: Sequence[str], model_version: str | None) -> Path:
    """Tasks with pre-annotations, and their labeling config beside them (both whole or absent); returns the config's path."""
    from sav_router.core.jsonio import write_json_atomic, write_text_atomic

    write_json_atomic(tasks_path, tasks_with_predictions(rows, model_version))
    config = config_path(tasks_path)
    write_text_atomic(config, labeling_config(labels))
    return config


def _prediction(label: str, score: Any, model_version: str | None) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "model_version": model_version,
        "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}],
    }
    if score is not None:
        prediction["score"] = float(score)
    return prediction


def tasks_with_predictions(rows: Iterable[Mapping[str, Any]], model_version: str | None) -> list[dict[str, Any]]:
    """Label Studio import tasks; the model's top label becomes a pre-annotation.

    Each row: `id`, `text`, `label` (model's top label, may be absent), `score`,
    optional `data` (extra task fields); any other key (selection priority,
    signals, top_k...) also goes into the task data, where the Data Manager can
    show and sort on it.
    """
    tasks = []
    for row in rows:
        data: dict[str, Any] = {key: value for key, value in row.items() if key not in _ROW_KEYS}
        data.update(row.get("data") or {})
        data[TO_NAME] = row["text"]
        if row.get("id") is not None:
            data[REQUEST_ID] = str(row["id"])
        task: dict[str, Any] = {"data": data}
        if row.get("label"):
            task["predictions"] = [_prediction(str(row["label"]), row.get("score"), model_version)]
        tasks.append(task)
    return tasks


# -- export parsing ------------------------------------------------------------
def _text_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _has_undecodable(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)  # surrogateescape'd bytes


def _is_task(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("data"), dict)


def load_export(path: str | os.PathLike[str]) -> list[Any] | None:
    """The export's items, or None when the file is not a Label Studio export (e.g. JSONL)."""
    try:
        raw = Path(path).read_bytes().decode("utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise NoValidDataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        return None  # several JSON lines, or not JSON at all: the JSONL reader decides
    if isinstance(document, list):
        return document
    if _is_task(document):  # a single task (Label Studio's per-task file)
        return [document]
    return None


def _choice(result: Sequence[Any], from_name: str) -> tuple[str | None, str]:
    """The chosen label of one annotation's results, or (None, reason)."""
    picks = [r for r in result if isinstance(r, dict) and str(r.get("type", "")).lower() == "choices"]
    named = [r for r in picks if r.get("from_name") == from_name]
    if not named and len({r.get("from_name") for r in picks}) == 1:
        named = picks  # a config of ours or not, one Choices control is unambiguous
    if not named:
        return None, MISSING_LABEL if not picks else f"{MALFORMED}: several Choices controls, none named {from_name!r}"
    choices = [c for r in named for c in ((r.get("value") or {}).get("choices") or [])]
    if len(choices) > 1:
        return None, f"{SEVERAL_CHOICES}: {', '.join(map(str, choices))}"
    label = (_text_value(choices[0]) or "").strip() if choices else ""
    return (label, "") if label else (None, MISSING_LABEL)


def _latest_annotations(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    annotations = task.get("annotations", task.get("completions")) or []
    usable = [a for a in annotations if isinstance(a, dict) and not (a.get("was_cancelled") or a.get("skipped"))]
    # Newest first (ISO timestamps sort as text); export order breaks ties.
    order = sorted(enumerate(usable), key=lambda pair: (_stamp(pair[1]), pair[0]), reverse=True)
    return [annotation for _, annotation in order]


def _task_label(task: Mapping[str, Any], from_name: str) -> tuple[str | None, str]:
    annotations = task.get("annotations", task.get("completions")) or []
    latest = _latest_annotations(task)
    if not latest:
        return None, CANCELLED if annotations else MISSING_LABEL
    problem = MISSING_LABEL
    for annotation in latest:  # the latest annotation that holds a choice
        label, problem = _choice(annotation.get("result") or [], from_name)
        if label is not None:
            return label, ""
        if problem != MISSING_LABEL:
            return None, problem  # a real problem in the latest answer is not papered over
    return None, problem


def _min_label(item: Mapping[str, Any], from_name: str) -> tuple[str | None, str]:
    value = item.get(from_name)
    if isinstance(value, dict):  # several choices or a non-single config
        value = value.get("choices")
    if isinstance(value, list):
        if len(value) > 1:
            return None, f"{SEVERAL_CHOICES}: {', '.join(map(str, value))}"
        value = value[0] if value else None
    label = _text_value(value)
    return (label.strip(), "") if label and label.strip() else (None, MISSING_LABEL)


def _stamp(item: Mapping[str, Any]) -> str:
    return str(item.get("updated_at") or item.get("created_at") or "")


def _superseded_min_rows(items: Sequence[Any]) -> set[int]:
    """JSON-MIN has one row per annotation: keep each task's latest, like the full format."""
    latest: dict[Any, tuple[str, int]] = {}
    rows = [(n, item) for n, item in enumerate(items, start=1) if isinstance(item, dict) and not _is_task(item)]
    for number, item in rows:
        if not isinstance(item.get("id"), (str, int)) or "annotation_id" not in item:
            continue  # not a Label Studio row: nothing ties it to others
        best = latest.get(item["id"])
        if best is None or _stamp(item) > best[0]:
            latest[item["id"]] = (_stamp(item), number)
    kept = {number for _, number in latest.values()}
    return {n for n, item in rows if isinstance(item.get("id"), (str, int)) and item["id"] in latest and "annotation_id" in item and n not in kept}


def is_json_min(items: Sequence[Any]) -> bool:
    """JSON-MIN rows are flat (no `data`) and carry annotation fields."""
    return any(isinstance(item, dict) and not _is_task(item) and ("annotation_id" in item or "annotator" in item) for item in items)


JSON_MIN_WARNING = (
    "{source} is a JSON-MIN export: Label Studio leaves skipped (cancelled) tasks out of it, so they are absent "
    "here, neither imported nor rejected; export JSON to see them (answer off-topic requests out of scope instead of skipping)"
)


def export_warnings(path: str | os.PathLike[str]) -> list[str]:
    """What an import of this export should tell the user besides rejects."""
    items = load_export(path)
    return [JSON_MIN_WARNING.format(source=path)] if items is not None and is_json_min(items) else []


def read_export(
    path: str | os.PathLike[str],
    *,
    columns: Columns = Columns(),
    split: str = TEACH,
    from_name: str | None = None,
) -> tuple[list[Record], list[Reject]]:
    """Records and rejects of a Label Studio JSON (or JSON-MIN) export.

    Cancelled (skipped) annotations are ignored; of the others, the latest one
    that holds a choice gives the label. A task without one is a reject whose
    line is its 1-based position in the export. No de-duplication here: the
    caller validates the records like any annotation file.
    """
    source = str(path)
    items = load_export(path)
    if items is None:
        raise NoValidDataError(f"{source}: not a Label Studio JSON export (expected a JSON array of tasks)")
    label_name = from_name or columns.label
    superseded = _superseded_min_rows(items)
    records: list[Record] = []
    rejects: list[Reject] = []
    for number, item in enumerate(items, start=1):
        if number in superseded:
            continue
        if not isinstance(item, dict):
            rejects.append(Reject(source, number, MALFORMED, "expected a task object"))
            continue
        full = _is_task(item)
        data = item["data"] if full else item
        task_id = item.get("id")
        # Our tasks carry request_id; otherwise the row's own id, except in JSON-MIN rows
        # (those with an annotation_id), where `id` is Label Studio's task id.
        own_id = data.get(columns.id) if full or "annotation_id" not in item else None
        request_id = _text_value(data.get(REQUEST_ID)) or _text_value(own_id)
        # rejects name the request (what the user knows); the task id only when there is none
        where = f"request {request_id}" if request_id else (f"task {task_id}" if task_id is not None else "")
        text = _text_value(data.get(columns.text))
        if text is not None and _has_undecodable(text):
            rejects.append(Reject(source, number, UNDECODABLE, where))
            continue
        if text is None or not text.strip():
            rejects.append(Reject(source, number, EMPTY_TEXT, where))
            continue
        label, problem = _task_label(item, label_name) if full else _min_label(item, label_name)
        if label is None:
            reason, _, detail = problem.partition(": ")
            rejects.append(Reject(source, number, reason, "; ".join(filter(None, [detail, where]))))
            continue
        tag = (_text_value(data.get(columns.split)) or split).strip().lower()
        if tag != split:  # a row tagged for the other split is not moved (held-out rows stay held out)
            rejects.append(Reject(source, number, BAD_SPLIT, "; ".join(filter(None, [f"tagged {tag!r}, imported as {split!r}", where]))))
            continue
        record_id = request_id
        if record_id is None and task_id is not None:
            record_id = f"ls-{task_id}"
        records.append(Record(text=text.strip(), label=label, id=record_id, split=split, source=source, line=number))
    return records, rejects


def is_export(path: str | os.PathLike[str]) -> bool:
    """True for a .json file holding a JSON array or a task object (not JSONL)."""
    return Path(path).suffix.lower() == ".json" and load_export(path) is not None
