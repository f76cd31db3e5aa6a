"""The local model server builds its answers in work bounded by the schema: no request can hang it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from oracle.devnet.model_server import MAX_ANSWER_VALUES, ModelServer, value_for
from oracle.protocol import ResultSpec, ResultType
from oracle.results import answer_to_result, decode_result, json_schema


def _values(value: Any) -> int:
    """How many values (scalars and arrays) an answer holds."""
    if isinstance(value, list):
        return 1 + sum(_values(v) for v in value)
    return 1


def _schema(abi_type: str) -> dict[str, Any]:
    value: dict[str, Any] = json_schema(ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type=abi_type))[
        "properties"]["value"]
    return value


def test_nested_dynamic_arrays_grow_the_answer_linearly() -> None:
    for depth in (8, 16, 24, 60):
        spec = ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(uint8" + "[]" * depth + ")")
        value = value_for(_schema(spec.abi_type), seed=1)
        # the tuple, one array per level, one number: as deep as the schema and no wider
        assert _values(value) == depth + 2
        assert decode_result(spec, answer_to_result(spec, json.dumps({"value": value})))  # a valid answer


def test_fixed_sizes_that_multiply_are_cut_at_the_value_bound() -> None:
    value = value_for(_schema("(uint8" + "[9]" * 10 + ")"), seed=1)  # 9**10 numbers asked for
    assert _values(value) <= MAX_ANSWER_VALUES + 12


def test_tuples_and_fixed_arrays_within_the_bound_are_answered_in_full() -> None:
    spec = ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(string,uint8[3][2],(bool,bytes2)[2])")
    value = value_for(_schema(spec.abi_type), seed=5)
    text, grid, pairs = decode_result(spec, answer_to_result(spec, json.dumps({"value": value})))
    assert isinstance(text, str) and len(grid) == 2 and all(len(row) == 3 for row in grid) and len(pairs) == 2


async def test_a_deeply_nested_schema_is_answered_over_http() -> None:
    server = ModelServer()
    await server.serve(0)
    try:
        schema = {"type": "object", "properties": {"value": _schema("(uint8" + "[]" * 24 + ")")},
                  "required": ["value"], "additionalProperties": False}
        body = {"model": "dev-model", "messages": [{"role": "user", "content": "deep"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
        async with aiohttp.ClientSession() as session, session.post(f"{server.base_url}/chat/completions",
                                                                     json=body) as reply:
            assert reply.status == 200
            content = (await reply.json())["choices"][0]["message"]["content"]
        assert _values(json.loads(content)["value"]) == 24 + 2
    finally:
        await server.close()
