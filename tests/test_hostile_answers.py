"""What a hostile or broken provider reply gets: an outcome (malformed or error) and a reason, never an
exception that would stop a request (and replay a paid call) or the daemon."""

from __future__ import annotations

import json

import pytest

from oracle.protocol import ResultSpec, ResultType
from oracle.results import ResultError, answer_to_result, json_schema
from oracle.router.adapters.openai import parse_chat as _parse


def _reply(message: object, finish: object = "stop") -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": finish}]}).encode()


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (_reply(None), "malformed"),
        (_reply({"role": "assistant", "content": '{"value": 1}'}, {"odd": True}), "malformed"),
        (_reply({"role": "assistant", "content": 7}), "malformed"),
        (_reply({"role": "assistant", "content": b'{"value": "\\ud800"}'.decode("unicode_escape")}),
         "malformed"),
        (_reply({"role": "assistant", "content": None, "refusal": "no"}), "refused"),
        (_reply({"role": "assistant", "content": "{}"}, "content_filter"), "filtered"),
        (_reply({"role": "assistant", "content": "{}"}, "length"), "truncated"),
        (b"<html>oops</html>", "error"),
        (b"[1, 2]", "error"),
        (json.dumps({"error": {"message": "overloaded"}}).encode(), "error"),
    ],
)
def test_provider_replies_map_to_an_outcome(raw: bytes, outcome: str) -> None:
    assert _parse(200, raw).outcome == outcome


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (ResultSpec(ResultType.JSON, max_bytes=100), '{"value": NaN}'),
        (ResultSpec(ResultType.JSON, max_bytes=100), '{"value": Infinity}'),
        (ResultSpec(ResultType.TEXT, max_bytes=100), '{"value": "\\ud800"}'),
        (ResultSpec(ResultType.UINT, min=0, max=9), '{"value": 1e400}'),
        (ResultSpec(ResultType.ABI, max_bytes=999, abi_type="(address)"), '{"value": ["0x12"]}'),
        (ResultSpec(ResultType.ABI, max_bytes=999, abi_type="(bytes2)"), '{"value": ["0x123456"]}'),
        (ResultSpec(ResultType.CHOICE, labels=("a", "b")), '{"value": ["a"]}'),
        (ResultSpec(ResultType.BOOL), "[" * 100_000),
    ],
)
def test_answers_that_do_not_fit_are_malformed(spec: ResultSpec, text: str) -> None:
    with pytest.raises(ResultError):
        answer_to_result(spec, text)


def test_abi_types_a_model_cannot_be_asked_for_are_refused() -> None:
    with pytest.raises(ResultError):
        json_schema(ResultSpec(ResultType.ABI, max_bytes=64, abi_type="(fixed128x18)"))


def test_deeply_nested_provider_body_is_an_error_not_a_crash() -> None:
    assert _parse(200, b"[" * 200_000).outcome == "error"


def test_brackets_and_escapes_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"value": "[" * 500 + '\\"{' * 100})
    assert answer_to_result(ResultSpec(ResultType.TEXT, max_bytes=2_000), text)
