"""The SageMaker inference contract through the ASGI app: formats, answers and bad input."""

from __future__ import annotations

import json

import pytest

from sav_router.core.policy import decision_record
from sav_router.serving.protocol import JSON, JSONLINES

RECORD_KEYS = {"id", "decision", "label", "team", "confidence", "reasons", "top_k", "model_version", "ood_score", "scores"}
LABELS = {"delivery", "refund", "warranty", "account"}


def post(client, body, content_type=JSON, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/invocations", content=data, headers={"Content-Type": content_type, **headers})


def test_ping_reports_the_loaded_model(app_client, router):
    response = app_client.get("/ping")
    assert response.status_code == 200
    assert response.json()["model_version"] == router.version


def test_execution_parameters_for_batch_transform(app_client):
    assert app_client.get("/execution-parameters").json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_single_request_is_the_core_decision_record(app_client, router):
    text = "my parcel courier tracking still not arrived"
    response = post(app_client, {"id": "r-1", "text": text})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(JSON)
    assert response.headers["x-model-version"] == router.version
    record = response.json()
    decisions, scores = router.predict([text])
    assert record == json.loads(json.dumps(decision_record("r-1", decisions[0], scores[0])))
    assert set(record) == RECORD_KEYS
    assert set(record["scores"]) == LABELS and abs(sum(record["scores"].values()) - 1) < 1e-4
    assert record["model_version"] == router.version


def test_instances_keep_order_and_ids(app_client):
    texts = ["refund my money back please", "password login locked", "broken defect repair", "courier parcel delivery"]
    instances = [{"id": i, "text": text} for i, text in enumerate(texts)]
    predictions = post(app_client, {"instances": instances}).json()["predictions"]
    assert [p["id"] for p in predictions] == [0, 1, 2, 3]
    assert [p["label"] for p in predictions] == ["refund", "account", "warranty", "delivery"]


def test_id_is_optional(app_client):
    assert post(app_client, {"text": "refund money"}).json()["id"] is None


def test_blank_text_is_an_empty_text_escalation(app_client, router):
    record = post(app_client, {"id": "b", "text": "   "}).json()
    assert record["decision"] == "escalate" and record["reasons"] == ["empty_text"]
    assert record["scores"] is None and record["model_version"] == router.version


def test_jsonlines_answer_line_for_line_with_errors_in_place(app_client):
    lines = [
        json.dumps({"id": "a", "text": "refund my money"}),
        "{not json",
        json.dumps({"id": "c", "text": 3}),
        "",
        json.dumps({"id": "e", "text": "password reset account"}),
    ]
    response = post(app_client, "\r\n".join(lines) + "\n", JSONLINES)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(JSONLINES)
    out = response.text.split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1
    records = [json.loads(line) for line in out[:-1]]
    assert records[0]["id"] == "a" and records[0]["label"] == "refund"
    assert "malformed JSON" in records[1]["error"]
    assert records[2] == {"id": "c", "error": "'text' must be a string, got integer"}
    assert records[3]["error"] == "empty line"
    assert records[4]["label"] == "account"


def test_jsonlines_without_final_newline(app_client):
    body = json.dumps({"text": "refund"}) + "\n" + json.dumps({"text": "login"})
    assert len(post(app_client, body, JSONLINES).text.splitlines()) == 2


def test_accept_header_chooses_the_answer_format(app_client):
    body = json.dumps({"text": "refund"}) + "\n"
    as_json = post(app_client, body, JSONLINES, Accept=JSON)
    assert as_json.headers["content-type"].startswith(JSON) and len(as_json.json()["predictions"]) == 1
    as_lines = post(app_client, {"instances": [{"text": "a"}, {"text": "b"}]}, Accept=f"{JSONLINES}, */*")
    assert len(as_lines.text.splitlines()) == 2
    assert post(app_client, {"text": "x"}, Accept="text/csv").status_code == 406


def test_bad_item_in_a_list_does_not_fail_the_good_ones(app_client):
    response = post(app_client, {"instances": [{"id": "ok", "text": "refund"}, {"id": "bad"}, "nope", {"id": [1], "text": "x"}]})
    assert response.status_code == 200
    ok, missing, not_object, bad_id = response.json()["predictions"]
    assert ok["label"] == "refund"
    assert missing == {"id": "bad", "error": "missing 'text'"}
    assert not_object["error"].startswith("a request must be a JSON object")
    assert bad_id["error"] == "'id' must be a string, an integer or null, got array"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "fragment"),
    [
        (b"{", JSON, 400, "malformed_json", "malformed JSON"),
        (b"", JSON, 400, "malformed_json", "malformed JSON"),
        (b"\xff\xfe{}", JSON, 400, "invalid_encoding", "UTF-8"),
        (json.dumps({"id": 1}), JSON, 400, "invalid_request", "missing 'text'"),
        (json.dumps({"text": None}), JSON, 400, "invalid_request", "'text' must be a string, got null"),
        (json.dumps({"text": ["a"]}), JSON, 400, "invalid_request", "got array"),
        (json.dumps([{"text": "a"}]), JSON, 400, "invalid_request", "got array"),
        (json.dumps({"instances": {"text": "a"}}), JSON, 400, "invalid_request", "'instances' must be an array"),
        (json.dumps({"instances": [{}, 1]}), JSON, 400, "no_valid_request", "none of the 2 requests"),
        ('{"text": "\\ud800"}', JSON, 400, "invalid_request", "lone surrogate"),
        ("[" * 100_000 + "]" * 100_000, JSON, 400, "malformed_json", "nested"),
        ("\n", JSONLINES, 400, "invalid_request", "empty body"),
        ("garbage\n{}\n", JSONLINES, 400, "no_valid_request", "malformed JSON"),
        (json.dumps({"text": "a"}), "text/csv", 415, "unsupported_media_type", "text/csv"),
        (json.dumps({"text": "a"}), "application/json; charset=latin-1", 415, "unsupported_media_type", "charset"),
    ],
)
def test_bad_input_is_a_4xx_with_a_json_error(app_client, body, content_type, status, code, fragment):
    response = post(app_client, body, content_type)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code and fragment in error["error"]


def test_all_invalid_list_lists_each_error(app_client):
    error = post(app_client, {"instances": [{"id": "x"}, {"text": 1}]}).json()
    assert [item["error"] for item in error["predictions"]] == ["missing 'text'", "'text' must be a string, got integer"]


def test_empty_instances_is_an_empty_answer(app_client):
    response = post(app_client, {"instances": []})
    assert response.status_code == 200 and response.json() == {"predictions": []}


def test_charset_and_missing_content_type_are_accepted(app_client):
    assert post(app_client, {"text": "refund"}, "application/json; charset=UTF-8").status_code == 200
    response = app_client.post("/invocations", content=json.dumps({"text": "refund"}))
    assert response.status_code == 200


def test_oversized_payload_is_413_both_declared_and_streamed(app_client):
    big = json.dumps({"text": "refund " * 200_000})  # > 1 MB (the fixture's limit)
    response = post(app_client, big)
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(20):
            yield b"x" * 100_000

    streamed = app_client.post("/invocations", content=chunks(), headers={"Content-Type": JSON})
    assert streamed.status_code == 413


def test_payload_just_under_the_limit_is_served(app_client):
    body = json.dumps({"instances": [{"text": "refund money back " * 50}] * 900})
    assert len(body) < 1024 * 1024
    response = post(app_client, body)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 900


def test_unknown_routes_and_methods_answer_json(app_client):
    missing = app_client.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = app_client.get("/invocations")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_openapi_documents_both_formats(app_client):
    spec = app_client.get("/openapi.json").json()
    content = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert set(content) == {JSON, JSONLINES}
