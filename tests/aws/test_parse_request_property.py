"""Property: any SQS body is a request the endpoint payload can carry, or a MalformedMessage (DLQ) - nothing else."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sav_router.aws.routing import MalformedMessage, parse_request

# Text with lone surrogates on purpose: st.text() never draws them, so strings are joined from code points.
any_char = st.characters() | st.integers(0xD800, 0xDFFF).map(chr) | st.sampled_from(["\x00", "\u2028", "\ufeff"])
any_text = st.lists(any_char, max_size=40).map("".join)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["id", "text", "other"]), children, max_size=4),
    max_leaves=8,
)
bodies = st.one_of(
    any_text,
    values.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries({"id": st.one_of(any_text, st.integers()), "text": any_text}).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(body=bodies)
def test_property_a_body_is_a_sendable_request_or_a_reasoned_dead_letter(body):
    try:
        request = parse_request("m1", body)
    except MalformedMessage as exc:
        assert str(exc)  # the DLQ message carries a reason
        return
    # the batch payload of `EndpointScorer.score` can be encoded with this request in it
    json.dumps({"instances": [{"id": request.message_id, "text": request.text}]}, ensure_ascii=False).encode("utf-8")
    request.id.encode("utf-8")
    assert request.id.strip()
