"""The `$batch` codec and the Retry-After reading: whole, broken and hostile input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casebridge.sinks.dynamics import batch
from casebridge.sinks.dynamics.client import MAX_RETRY_AFTER, entity_id, retry_after

API = "https://org.crm4.dynamics.com/api/data/v9.2/"


def response(boundary: str, parts: list[tuple[int, dict[str, str], str]]) -> bytes:
    out = []
    for status, headers, body in parts:
        lines = [f"--{boundary}", "Content-Type: application/http", "", f"HTTP/1.1 {status} X"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["", body]
        out.append("\r\n".join(lines) + "\r\n")
    return ("".join(out) + f"--{boundary}--\r\n").encode()


def test_a_batch_is_encoded_as_independent_http_requests():
    content_type, body = batch.encode(
        API, [("PATCH", "incidents(k='HV-1')", {"title": "Frost"}, [("If-None-Match", "*")])]
    )
    boundary = content_type.split("boundary=")[1]
    text = body.decode()
    assert text.endswith(f"--{boundary}--\r\n")
    assert f"PATCH {API}incidents(k='HV-1') HTTP/1.1\r\nIf-None-Match: *" in text
    assert json.dumps({"title": "Frost"}) in text


def test_the_answers_of_a_batch_come_back_in_order_with_their_headers():
    body = response(
        "batchresponse_1",
        [
            (204, {"OData-EntityId": f"{API}incidents(0b7c56a4-5d2e-4f1b-9a61-2f7f3c1d9e01)"}, ""),
            (412, {"Content-Type": "application/json"}, '{"error": {"code": "0x80040237"}}'),
        ],
    )
    parts = batch.decode("multipart/mixed; boundary=batchresponse_1", body, expected=2)
    assert [p.status for p in parts] == [204, 412]
    assert entity_id(parts[0].headers["odata-entityid"]) == "0b7c56a4-5d2e-4f1b-9a61-2f7f3c1d9e01"
    assert parts[1].json()["error"]["code"] == "0x80040237"


def test_more_answers_than_requests_is_an_error_not_a_forged_success():
    body = response("b", [(204, {}, "")] * 3)
    with pytest.raises(batch.BatchError, match="3 responses"):
        batch.decode("multipart/mixed; boundary=b", body, expected=2)


@settings(max_examples=400, deadline=None)
@given(
    content_type=st.one_of(st.just("multipart/mixed; boundary=b"), st.text(max_size=80)),
    body=st.one_of(
        st.binary(max_size=2000),
        st.lists(
            st.tuples(
                st.integers(-5, 1000),
                st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4),
                st.text(max_size=100),
            ),
            max_size=8,
        ).map(lambda parts: response("b", parts)),
    ),
    expected=st.integers(1, 10),
)
def test_any_batch_answer_decodes_or_says_batcherror(content_type, body, expected):
    try:
        parts = batch.decode(content_type, body, expected=expected)
    except batch.BatchError:
        return
    assert len(parts) <= expected
    assert all(100 <= p.status <= 999 for p in parts)


@given(st.text(max_size=100))
def test_any_retry_after_is_a_bounded_wait_or_none(value):
    wait = retry_after(value, now=datetime(2026, 12, 4, tzinfo=UTC))
    assert wait is None or 0.0 <= wait <= MAX_RETRY_AFTER


def test_retry_after_in_seconds_and_as_a_date():
    now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    assert retry_after("120", now=now) == 120.0
    assert retry_after("Fri, 04 Dec 2026 08:01:00 GMT", now=now) == 60.0
    assert retry_after("inf", now=now) == MAX_RETRY_AFTER
    assert retry_after("nan", now=now) is None
