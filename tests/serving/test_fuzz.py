"""No client input gets a 5xx: property-based fuzzing of /invocations.

Hypothesis drives the in-process app with arbitrary bodies, content types and
request shapes; schemathesis drives the live uvicorn server from the app's
own OpenAPI document (valid and schema-violating requests).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sav_router.serving.protocol import JSON, JSONLINES

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=200) | st.sampled_from(["", " ", "\x00", "\ud800", "refund money", "é" * 300, "[CLS] [SEP]", "\u200b"])
ids = st.none() | st.integers() | st.text(max_size=10) | json_values
requests = st.fixed_dictionaries({}, optional={"text": texts | json_values, "id": ids, "extra": json_values})
content_types = st.sampled_from(
    [JSON, JSONLINES, "application/json; charset=utf-8", "application/x-ndjson", "text/plain", "", "application/json; charset=utf-16", "*/*", "application/jsonlines;;"]
) | st.text(max_size=20)
accepts = st.none() | st.sampled_from([JSON, JSONLINES, "*/*", "text/html", "application/*, text/csv"]) | st.text(max_size=15)


def _encode(value) -> str:
    return json.dumps(value, allow_nan=True)


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(_encode),
    requests.map(_encode),
    st.lists(requests | json_values, max_size=6).map(lambda items: _encode({"instances": items})),
    st.lists(requests.map(_encode) | st.text(max_size=20), max_size=6).map("\n".join),
)


def _header_safe(value: str | None) -> bool:
    return value is None or (value.isascii() and value.isprintable())


def check_answer(response, body) -> None:
    assert response.status_code < 500, (response.status_code, response.text, body)
    if response.status_code >= 400:
        error = response.json()
        assert isinstance(error["error"], str) and error["error"]
    elif response.headers["content-type"].startswith(JSONLINES):
        for line in response.text.splitlines():
            json.loads(line)
    else:
        answer = response.json()
        assert "predictions" in answer or "decision" in answer


@FUZZ
@given(body=bodies, content_type=content_types, accept=accepts)
def test_arbitrary_input_never_gets_a_5xx(app_client, body, content_type, accept):
    headers = {}
    if _header_safe(content_type) and content_type:
        headers["Content-Type"] = content_type
    if accept is not None and _header_safe(accept):
        headers["Accept"] = accept
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    check_answer(app_client.post("/invocations", content=data, headers=headers), body)


@FUZZ
@given(items=st.lists(requests | json_values, min_size=1, max_size=8))
def test_list_answers_line_up_with_requests(app_client, items):
    body = _encode({"instances": items})
    response = app_client.post("/invocations", content=body.encode("utf-8", "surrogatepass"), headers={"Content-Type": JSON})
    check_answer(response, body)
    predictions = response.json()["predictions"]
    assert len(predictions) == len(items)
    for item, prediction in zip(items, predictions):
        valid = isinstance(item, dict) and isinstance(item.get("text"), str) and ("error" not in prediction)
        assert ("decision" in prediction) == valid


@FUZZ
@given(lines=st.lists(requests.map(_encode) | st.text(max_size=30).filter(lambda s: "\n" not in s), min_size=1, max_size=8))
def test_jsonlines_answer_has_one_line_per_input_line(app_client, lines):
    body = "\n".join(lines) + "\n"
    response = app_client.post("/invocations", content=body.encode("utf-8", "surrogatepass"), headers={"Content-Type": JSONLINES})
    check_answer(response, body)
    if response.status_code == 200:
        assert len(response.text.split("\n")) == len(lines) + 1


def test_schemathesis_finds_no_server_error(live_server):
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    @schemathesis.serializer(JSONLINES)
    def jsonlines(ctx, value):
        return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8", "surrogatepass")

    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    failures, calls = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /ping", "POST /invocations", "GET /execution-parameters"}
    for op in operations:
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if op.method.upper() == "POST" else (GenerationMode.POSITIVE,)
        for mode in modes:  # a GET without parameters has no invalid form

            @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                response = case.call(base_url=live_server)
                calls.append((op.label, mode, response.status_code))
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except Exception as exc:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{op.label} ({mode.value}): {exc}")
                if response.status_code >= 400:
                    assert "error" in response.json()

            run()
    assert not failures, failures[:3]
    statuses = {status for label, _, status in calls if label == "POST /invocations"}
    assert 200 in statuses and any(400 <= s < 500 for s in statuses)  # both valid and invalid requests were sent
