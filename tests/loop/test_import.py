"""`sav-router import`: Label Studio exports and JSONL/CSV become validated teach/check drops."""

from __future__ import annotations

import argparse
import json

import pytest

from sav_router.data.annotations import CHECK, TEACH, NoValidDataError, load_annotations
from sav_router.cli.importing import register as add_import_parser
from sav_router.loop.importing import ImportUsageError, import_annotations
from sav_router.loop.workspace import Workspace
from tests.conftest import read_jsonl, write_jsonl


def ls_task(task_id, text, choice, request_id=None):
    data = {"text": text} | ({"request_id": request_id} if request_id else {})
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}] if choice else []
    return {"id": task_id, "data": data, "annotations": [{"id": task_id, "result": result, "was_cancelled": False, "created_at": "2026-01-05T10:00:00Z"}], "predictions": []}


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path / "ws")


def drops(workspace):
    return sorted(workspace.path("annotations").glob("*.jsonl"))


def test_label_studio_export_becomes_a_teach_drop_with_rejects_beside_it(workspace, tmp_path):
    # GIVEN a Label Studio export with a good task, a duplicate, a conflict and an unanswered task
    export = tmp_path / "project-1.json"
    export.write_text(json.dumps([
        ls_task(1, "my parcel is late", "delivery", "r1"),
        ls_task(2, "My  parcel is LATE", "delivery", "r2"),  # same text once normalised
        ls_task(3, "card charged twice", "refund", "r3"),
        ls_task(4, "card charged twice", "account", "r4"),  # same text, other label
        ls_task(5, "no answer", None, "r5"),
        ls_task(6, "reset my password", "account", "r6"),
    ]), encoding="utf-8")
    # WHEN it is imported
    result = import_annotations(workspace, export)
    # THEN one drop named <stamp>-import-teach.jsonl holds the valid rows with provenance
    (drop,) = drops(workspace)
    assert drop == result.path and drop.name.endswith("-import-teach.jsonl")
    rows = read_jsonl(drop)
    assert rows == [
        {"id": "r1", "text": "my parcel is late", "label": "delivery", "split": TEACH, "source": "import"},
        {"id": "r6", "text": "reset my password", "label": "account", "split": TEACH, "source": "import"},
    ]
    # AND the rejects are kept aside (outside annotations/, where a drop starts training) with the task position and reason
    assert result.format == "label-studio" and (result.imported, result.rejected) == (2, 4)
    rejects = read_jsonl(result.rejects_path)
    assert sorted((r["line"], r["reason"]) for r in rejects) == [(2, "duplicate"), (3, "conflicting_labels"), (4, "conflicting_labels"), (5, "missing_label")]
    assert result.rejects_path.name == drop.name.replace(".jsonl", ".rejects.jsonl")
    assert result.rejects_path.parent == workspace.path("review", "rejects")
    # AND the drop is a valid annotation file for the core loader
    assert [r.label for r in load_annotations([drop]).records] == ["delivery", "account"]


def test_jsonl_import_as_check_validates_like_any_annotation_file(workspace, tmp_path):
    # GIVEN JSONL rows: good, blank text, no label, undecodable bytes, malformed JSON
    path = tmp_path / "labels.jsonl"
    good = [{"id": "a", "text": "broken screen", "label": "warranty"}, {"id": "b", "text": "where is it", "label": "delivery"}]
    body = "".join(json.dumps(r) + "\n" for r in good) + '{"text": " ", "label": "x"}\n{"text": "no label"}\n'
    path.write_bytes(body.encode() + b'{"text": "caf\xe9", "label": "x"}\n{not json\n')
    # WHEN imported as check
    result = import_annotations(workspace, path, split=CHECK, source="vendor")
    # THEN the valid rows are a check drop named after the source
    assert result.path.name.endswith("-vendor-check.jsonl")
    assert [(r["id"], r["split"], r["source"]) for r in read_jsonl(result.path)] == [("a", CHECK, "vendor"), ("b", CHECK, "vendor")]
    assert result.reasons == {"empty_text": 1, "missing_label": 1, "undecodable_bytes": 1, "malformed_row": 1}


def test_rows_tagged_for_the_other_split_are_not_moved(workspace, tmp_path):
    # GIVEN a file whose rows carry their own split tags
    path = write_jsonl(tmp_path / "tagged.jsonl", [
        {"text": "held out one", "label": "refund", "split": "check"},
        {"text": "train me", "label": "refund", "split": "teach"},
        {"text": "untagged", "label": "refund"},
    ])
    # WHEN imported as teach
    result = import_annotations(workspace, path, split=TEACH)
    # THEN a held-out row never lands in teach (that would leak it into training)
    assert [r["text"] for r in read_jsonl(result.path)] == ["train me", "untagged"]
    assert [(r["line"], r["reason"]) for r in read_jsonl(result.rejects_path)] == [(1, "unknown_split_tag")]


def test_csv_import_with_other_column_names(workspace, tmp_path):
    from sav_router.data.annotations import Columns

    # GIVEN a Banking77-style CSV
    path = tmp_path / "bank.csv"
    path.write_text("text,category\nI lost my card,lost_card\nrefund not arrived,refund_not_showing_up\n", encoding="utf-8")
    # WHEN imported naming the label column
    result = import_annotations(workspace, path, columns=Columns(label="category"))
    # THEN both rows are kept with their labels
    assert result.format == "csv" and result.rejects_path is None
    assert [r["label"] for r in read_jsonl(result.path)] == ["lost_card", "refund_not_showing_up"]


def test_nothing_valid_fails_and_writes_nothing(workspace, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "", "label": "x"}, {"text": "t"}])
    with pytest.raises(NoValidDataError, match="no valid annotated row"):
        import_annotations(workspace, path)
    assert not workspace.path("annotations").exists() or not any(workspace.path("annotations").iterdir())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"split": "train"}, "unknown split"), ({"source": "my-tool"}, "--source"), ({"missing": True}, "no such file")],
)
def test_bad_arguments_are_one_line_usage_errors(workspace, tmp_path, kwargs, message):
    path = write_jsonl(tmp_path / "ok.jsonl", [{"text": "t", "label": "x"}])
    if kwargs.pop("missing", False):
        path = tmp_path / "absent.jsonl"
    with pytest.raises(ImportUsageError, match=message):
        import_annotations(workspace, path, **kwargs)


def test_import_command_line(workspace, tmp_path, capsys):
    # GIVEN the import subcommand registered on a parser
    parser = argparse.ArgumentParser(prog="sav-router")
    add_import_parser(parser.add_subparsers(dest="command", required=True))
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "t", "label": "x"}])
    # WHEN run with the contract's spelling
    args = parser.parse_args(["import", str(path), "--as", "check", "--workspace", str(workspace.root), "--source", "labelstudio"])
    code = args.func(args)
    # THEN it exits 0 and reports the drop
    assert code == 0
    (drop,) = drops(workspace)
    assert drop.name.endswith("-labelstudio-check.jsonl") and str(drop) in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse refuses an unknown split
        parser.parse_args(["import", str(path), "--as", "train"])


def test_a_label_studio_choice_that_cannot_be_a_label_is_rejected(workspace, tmp_path):
    # issue 11 (low): labels with a newline, a bidi override or a path shape are not imported
    export = tmp_path / "project-2.json"
    export.write_text(json.dumps([
        ls_task(1, "my parcel is late", "delivery", "r1"),
        ls_task(2, "refund please", "refund\nnow", "r2"),
        ls_task(3, "hello", "ref\u202eund", "r3"),
        ls_task(4, "login", "../../etc", "r4"),
    ]), encoding="utf-8")
    result = import_annotations(workspace, export)
    assert [r["id"] for r in read_jsonl(result.path)] == ["r1"]
    assert sorted((r["line"], r["reason"]) for r in read_jsonl(result.rejects_path)) == [(2, "invalid_label"), (3, "invalid_label"), (4, "invalid_label")]


def test_out_of_scope_answers_are_imported_and_a_json_min_export_warns_that_skipped_tasks_are_absent(workspace, tmp_path):
    from sav_router.core.labels import OUT_OF_SCOPE

    # GIVEN a JSON-MIN export (flat rows, one per annotation) with an out-of-scope answer
    export = tmp_path / "project-min.json"
    export.write_text(json.dumps([
        {"text": "tell me a joke", "request_id": "r1", "id": 7, "label": OUT_OF_SCOPE, "annotator": 1, "annotation_id": 3, "created_at": "2026-01-05T10:00:00Z"},
        {"text": "my parcel is late", "request_id": "r2", "id": 8, "label": "delivery", "annotator": 1, "annotation_id": 4, "created_at": "2026-01-05T10:00:00Z"},
        {"text": "no answer", "request_id": "r3", "id": 9, "annotator": 1, "annotation_id": 5, "created_at": "2026-01-05T10:00:00Z"},
    ]), encoding="utf-8")
    # WHEN it is imported as calibrate rows
    result = import_annotations(workspace, export, split="calibrate")
    # THEN the out-of-scope answer is a row like any other
    assert sorted((r["id"], r["label"]) for r in read_jsonl(result.path)) == [("r1", OUT_OF_SCOPE), ("r2", "delivery")]
    # AND the import warns that JSON-MIN leaves skipped tasks out, and the reject names the request, not the task
    assert len(result.warnings) == 1 and "skipped" in result.warnings[0] and "warning:" in result.summary()
    (reject,) = read_jsonl(result.rejects_path)
    assert reject["detail"] == "request r3"


def test_an_answer_corrected_inside_one_export_file_is_not_a_conflict_when_newer(workspace, tmp_path):
    # GIVEN a full JSON export where task 1 was answered, then corrected (two annotations)
    task = ls_task(1, "card charged twice", "refund", "r1")
    task["annotations"].append({"id": 2, "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["billing"]}}],
                                "was_cancelled": False, "created_at": "2026-01-06T10:00:00Z"})
    export = tmp_path / "project-2.json"
    export.write_text(json.dumps([task]), encoding="utf-8")
    result = import_annotations(workspace, export)
    assert [(r["id"], r["label"]) for r in read_jsonl(result.path)] == [("r1", "billing")] and result.rejected == 0 and not result.warnings
