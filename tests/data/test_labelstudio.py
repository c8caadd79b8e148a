"""Label Studio formats: labeling config, tasks with pre-annotations, JSON / JSON-MIN exports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from sav_router.core.labels import OUT_OF_SCOPE
from sav_router.data import labelstudio
from sav_router.data.annotations import CHECK, MISSING_LABEL, NoValidDataError


def annotation(choice, *, created, cancelled=False, from_name="label", annotation_id=1):
    """One annotation as Label Studio 1.x exports it (fields beyond `result` included on purpose)."""
    return {
        "id": annotation_id,
        "completed_by": 1,
        "result": [] if choice is None else [
            {"value": {"choices": [choice] if isinstance(choice, str) else choice}, "id": "aB3xYz", "from_name": from_name, "to_name": "text", "type": "choices", "origin": "manual"}
        ],
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": created,
        "updated_at": created,
        "draft_created_at": None,
        "lead_time": 4.2,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"u-{annotation_id}",
        "import_id": None,
        "last_action": None,
        "task": 7,
        "project": 3,
        "updated_by": 1,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def task(task_id, data, annotations, predictions=()):
    return {
        "id": task_id,
        "annotations": annotations,
        "file_upload": "tasks.json",
        "drafts": [],
        "predictions": list(predictions),
        "data": data,
        "meta": {},
        "created_at": "2026-01-05T09:00:00.000000Z",
        "updated_at": "2026-01-05T10:00:00.000000Z",
        "inner_id": task_id,
        "total_annotations": len(annotations),
        "cancelled_annotations": sum(a["was_cancelled"] for a in annotations),
        "total_predictions": len(predictions),
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": 1,
        "comment_authors": [],
    }


def write(tmp_path, name, document):
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_labeling_config_is_xml_whose_names_match_the_predictions():
    # GIVEN labels, one with XML-special characters
    labels = ["delivery", "refund & returns", 'say "hi" <now>']
    # WHEN the config is generated
    root = ET.fromstring(labelstudio.labeling_config(labels))
    # THEN a Text object and a single-choice Choices control point at each other with our names
    text, choices = root.find("Text"), root.find("Choices")
    assert text.get("name") == labelstudio.TO_NAME and text.get("value") == "$text"
    assert choices.get("name") == labelstudio.FROM_NAME and choices.get("toName") == text.get("name")
    assert choices.get("choice") == "single"
    # AND the reserved out-of-scope answer is always the last choice ("none of these")
    assert [c.get("value") for c in choices.findall("Choice")] == labels + [OUT_OF_SCOPE]


def test_labeling_config_offers_the_configured_out_of_scope_name_once(monkeypatch):
    monkeypatch.setenv("SAV_ROUTER_OUT_OF_SCOPE_LABEL", "none_of_these")
    root = ET.fromstring(labelstudio.labeling_config(["delivery", "none_of_these", "refund"]))
    assert [c.get("value") for c in root.find("Choices").findall("Choice")] == ["delivery", "refund", "none_of_these"]


def test_labeling_config_needs_labels():
    with pytest.raises(ValueError):
        labelstudio.labeling_config([])


def test_tasks_carry_the_top_label_as_a_pre_annotation_and_extra_fields_as_data():
    # GIVEN selected requests with the model's top label and selection signals
    rows = [
        {"id": "r1", "text": "where is my parcel", "label": "delivery", "score": 0.61, "priority": 0.9, "data": {"batch": "b7"}},
        {"id": 2, "text": "hello", "label": None, "score": None},
    ]
    # WHEN they become Label Studio tasks
    tasks = labelstudio.tasks_with_predictions(rows, "v3")
    # THEN the text and request id are task data, extras too, and the prediction matches the config's names
    first = tasks[0]
    assert first["data"] == {"text": "where is my parcel", "request_id": "r1", "priority": 0.9, "batch": "b7"}
    (prediction,) = first["predictions"]
    assert prediction["model_version"] == "v3" and prediction["score"] == pytest.approx(0.61)
    (result,) = prediction["result"]
    assert result == {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["delivery"]}}
    # AND a row without a label gets no pre-annotation
    assert "predictions" not in tasks[1] and tasks[1]["data"]["request_id"] == "2"


def test_read_export_of_a_real_label_studio_export(tmp_path):
    # GIVEN a Label Studio JSON export: relabelled, cancelled, unanswered, multi-choice and empty tasks
    tasks = [
        task(1, {"text": "my parcel never came", "request_id": "r1"}, [annotation("delivery", created="2026-01-05T10:00:00Z")]),
        task(2, {"text": "refund please", "request_id": "r2"}, [
            annotation("delivery", created="2026-01-05T10:00:00Z", annotation_id=2),
            annotation("refund", created="2026-01-06T08:00:00Z", annotation_id=3),  # the latest answer wins
            annotation("warranty", created="2026-01-07T08:00:00Z", cancelled=True, annotation_id=4),  # skipped: ignored
        ]),
        task(3, {"text": "skipped by everyone", "request_id": "r3"}, [annotation("refund", created="2026-01-05T10:00:00Z", cancelled=True)]),
        task(4, {"text": "nobody looked", "request_id": "r4"}, []),
        task(5, {"text": "two answers", "request_id": "r5"}, [annotation(["refund", "delivery"], created="2026-01-05T10:00:00Z")]),
        task(6, {"text": "   ", "request_id": "r6"}, [annotation("refund", created="2026-01-05T10:00:00Z")]),
        task(7, {"text": "imported elsewhere", "id": "ext-9"}, [annotation("account", created="2026-01-05T10:00:00Z")]),
    ]
    path = write(tmp_path, "project-3-at-2026-01-07.json", tasks)
    # WHEN it is read
    records, rejects = labelstudio.read_export(path, split=CHECK)
    # THEN answered tasks become records with the request id and the latest non-cancelled label
    assert [(r.id, r.text, r.label, r.split, r.line) for r in records] == [
        ("r1", "my parcel never came", "delivery", CHECK, 1),
        ("r2", "refund please", "refund", CHECK, 2),
        ("ext-9", "imported elsewhere", "account", CHECK, 7),
    ]
    # AND every other task is a reject with its position and reason
    assert [(r.line, r.reason) for r in rejects] == [
        (3, labelstudio.CANCELLED),
        (4, MISSING_LABEL),
        (5, labelstudio.SEVERAL_CHOICES),
        (6, "empty_text"),
    ]
    # AND a reject names the request id, never Label Studio's task id when the request has one
    assert rejects[1].detail == "request r4" and rejects[0].source == str(path)


def test_read_export_prefers_our_choices_control_when_there_are_several(tmp_path):
    # GIVEN a project with a second Choices control (e.g. sentiment) beside ours
    both = annotation("refund", created="2026-01-05T10:00:00Z")
    both["result"].append({"value": {"choices": ["angry"]}, "from_name": "sentiment", "to_name": "text", "type": "choices"})
    only_other = annotation("angry", created="2026-01-05T10:00:00Z", from_name="sentiment")
    only_other["result"].append({"value": {"choices": ["calm"]}, "from_name": "tone", "to_name": "text", "type": "choices"})
    path = write(tmp_path, "export.json", [task(1, {"text": "a"}, [both]), task(2, {"text": "b"}, [only_other])])
    # WHEN read
    records, rejects = labelstudio.read_export(path)
    # THEN our `label` control is used, and two foreign controls are ambiguous, not guessed
    assert [r.label for r in records] == ["refund"]
    assert rejects[0].line == 2 and rejects[0].reason == "malformed_row"


def test_read_export_accepts_a_single_choices_control_with_another_name(tmp_path):
    path = write(tmp_path, "export.json", [task(1, {"text": "a"}, [annotation("refund", created="x", from_name="intent")])])
    records, _ = labelstudio.read_export(path)
    assert [r.label for r in records] == ["refund"] and records[0].id == "ls-1"


def test_json_min_export_round_trip_keeps_request_ids_and_the_latest_answer(tmp_path):
    # GIVEN tasks we generated, exported as JSON-MIN (Label Studio replaces `id` by its task id,
    # one row per annotation, newest first)
    tasks = labelstudio.tasks_with_predictions([{"id": "r1", "text": "refund my card", "label": "refund", "score": 0.8}], "v1")
    data = tasks[0]["data"]
    exported = [
        {**data, "id": 41, "label": "delivery", "annotator": 2, "annotation_id": 9, "created_at": "2026-01-07T08:00:00Z", "updated_at": "2026-01-07T08:00:00Z", "lead_time": 3.0},
        {**data, "id": 41, "label": "refund", "annotator": 1, "annotation_id": 8, "created_at": "2026-01-06T08:00:00Z", "updated_at": "2026-01-06T08:00:00Z", "lead_time": 5.0},
        {"text": "no label here", "id": 42, "annotator": 1, "annotation_id": 10, "created_at": "2026-01-06T08:00:00Z"},
        {"text": "two", "id": 43, "label": {"choices": ["a", "b"]}, "annotation_id": 11, "created_at": "2026-01-06T08:00:00Z"},
    ]
    path = write(tmp_path, "project-min.json", exported)
    # WHEN read
    records, rejects = labelstudio.read_export(path)
    # THEN the request id comes back and the latest annotation wins
    assert [(r.id, r.text, r.label) for r in records] == [("r1", "refund my card", "delivery")]
    assert [(r.line, r.reason) for r in rejects] == [(3, MISSING_LABEL), (4, labelstudio.SEVERAL_CHOICES)]


def test_full_round_trip_from_tasks_to_export(tmp_path):
    # GIVEN our tasks, accepted as pre-annotated by an annotator in Label Studio
    tasks = labelstudio.tasks_with_predictions([{"id": "r9", "text": "locked out of my account", "label": "account", "score": 0.7}], "v1")
    exported = [task(1, tasks[0]["data"], [{"result": tasks[0]["predictions"][0]["result"], "was_cancelled": False, "created_at": "2026-01-05T10:00:00Z"}])]
    # WHEN the export is read
    records, rejects = labelstudio.read_export(write(tmp_path, "export.json", exported))
    # THEN the annotation is the accepted prediction, under the request id
    assert [(r.id, r.label) for r in records] == [("r9", "account")] and not rejects


def test_jsonl_is_not_mistaken_for_an_export(tmp_path):
    # GIVEN a .json file holding JSON lines, and one holding a single plain row
    lines = tmp_path / "rows.json"
    lines.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    single = write(tmp_path, "one.json", {"text": "a", "label": "x"})
    # THEN neither is a Label Studio export, and reading one as such is a clear error
    assert not labelstudio.is_export(lines) and not labelstudio.is_export(single)
    with pytest.raises(NoValidDataError, match="not a Label Studio JSON export"):
        labelstudio.read_export(lines)


def test_a_plain_json_array_keeps_its_ids_and_its_split_tags(tmp_path):
    # GIVEN a JSON array of plain rows (not from Label Studio), one tagged for the held-out split
    path = write(tmp_path, "rows.json", [{"id": "r1", "text": "a", "label": "x"}, {"id": "r2", "text": "b", "label": "y", "split": "check"}])
    # WHEN read as teach
    records, rejects = labelstudio.read_export(path)
    # THEN the row's own id is kept and the check row is not moved into teach
    assert [(r.id, r.label) for r in records] == [("r1", "x")]
    assert [(r.line, r.reason) for r in rejects] == [(2, "unknown_split_tag")]
