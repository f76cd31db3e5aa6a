"""Typed result encoding: values that fit are encoded as consumers decode them; hostile ones are refused."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode

from oracle.protocol import ResultSpec, ResultType
from oracle.results import (
    MAX_ENUM_RANGE,
    ResultError,
    abi_components,
    bounds_as_enums,
    check_answerable,
    decode_result,
    encode_result,
    json_schema,
)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (ResultSpec(ResultType.TEXT, max_bytes=5), "héllo"[:4]),
        (ResultSpec(ResultType.BOOL), False),
        (ResultSpec(ResultType.UINT, min=5, max=5), 5),
        (ResultSpec(ResultType.INT, min=-3, max=3), -3),
        (ResultSpec(ResultType.CHOICE, labels=("a", "b")), 1),
        (ResultSpec(ResultType.JSON, max_bytes=50), {"a": [1, True, None]}),
        (ResultSpec(ResultType.ABI, max_bytes=1_000, abi_type="(string,uint8,string)"), ("s", 255, "r")),
        (ResultSpec(ResultType.ABI, max_bytes=1_000, abi_type="(uint8[],(bool,int256))"), ((1, 2), (True, -1))),
    ],
)
def test_round_trip(spec: ResultSpec, value: Any) -> None:
    assert decode_result(spec, encode_result(spec, value)) == value


def test_text_is_abi_encoded_string() -> None:
    data = encode_result(ResultSpec(ResultType.TEXT, max_bytes=10), "hi")
    assert decode(["string"], data) == ("hi",)


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (ResultSpec(ResultType.TEXT, max_bytes=3), "four", "above the requested maximum"),
        (ResultSpec(ResultType.TEXT, max_bytes=3), "é" * 2, "above the requested maximum"),  # bytes, not chars
        (ResultSpec(ResultType.TEXT, max_bytes=9), 12, "expected text"),
        (ResultSpec(ResultType.BOOL), 1, "true or false"),
        (ResultSpec(ResultType.UINT, min=0, max=100), 101, "outside the requested bounds"),
        (ResultSpec(ResultType.UINT, min=0, max=100), True, "expected an integer"),
        (ResultSpec(ResultType.UINT, min=0, max=100), 5.0, "expected an integer"),
        (ResultSpec(ResultType.INT, min=-1, max=1), -2, "outside the requested bounds"),
        (ResultSpec(ResultType.CHOICE, labels=("a", "b")), 2, "index in"),
        (ResultSpec(ResultType.CHOICE, labels=("a", "b")), -1, "index in"),
        (ResultSpec(ResultType.JSON, max_bytes=4), {"long": 1}, "above the requested maximum"),
        (ResultSpec(ResultType.ABI, max_bytes=999, abi_type="(uint8)"), (256,), "does not fit"),
        (ResultSpec(ResultType.ABI, max_bytes=999, abi_type="(uint8,bool)"), (1,), "expected 2 values"),
        (ResultSpec(ResultType.ABI, max_bytes=40, abi_type="(string)"), ("x" * 64,), "above the requested"),
    ],
)
def test_values_that_do_not_fit_are_refused(spec: ResultSpec, value: Any, message: str) -> None:
    with pytest.raises(ResultError, match=message):
        encode_result(spec, value)


def test_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        encode_result(ResultSpec(ResultType.JSON, max_bytes=50), float("nan"))


@pytest.mark.parametrize("abi_type", ["uint8", "(uint7)", "(string", "(uint8)[2]", "x" * 300])
def test_bad_abi_types_are_refused(abi_type: str) -> None:
    with pytest.raises(ResultError):
        abi_components(abi_type)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(uint256[20000])"),
         "takes at least 640000 bytes encoded, above the requested maxBytes of 4096"),
        (ResultSpec(ResultType.ABI, max_bytes=63, abi_type="(uint256,uint256)"), "raise maxBytes to at least 64"),
        (ResultSpec(ResultType.ABI, max_bytes=63, abi_type="(string)"), "at least 64 bytes"),  # offset + length
        (ResultSpec(ResultType.ABI, max_bytes=287, abi_type="((bool,string)[2])"), "at least 288 bytes"),
        (ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(" * 64 + "bool" + ")" * 64), "nest at most 63"),
        (ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(bool" + "[]" * 64 + ")"), "nest at most 63"),
        (ResultSpec(ResultType.JSON, max_bytes=1), "cannot hold an object"),
        (ResultSpec(ResultType.CHOICE, labels=("for", "against", "for")), "choice labels 0 and 2 are both 'for'"),
        (ResultSpec(ResultType.ABI, max_bytes=64, abi_type="(fixed128x18)"), "cannot be asked of a model"),
    ],
)
def test_requests_no_answer_can_satisfy_are_refused(spec: ResultSpec, message: str) -> None:
    with pytest.raises(ResultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_answerable(spec)


@pytest.mark.parametrize(
    ("spec", "smallest"),
    [
        (ResultSpec(ResultType.ABI, max_bytes=64, abi_type="(uint256,uint256)"), (0, 0)),
        (ResultSpec(ResultType.ABI, max_bytes=64, abi_type="(string)"), ("",)),
        (ResultSpec(ResultType.ABI, max_bytes=288, abi_type="((bool,string)[2])"), ([(False, ""), (False, "")],)),
        (ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(" * 63 + "bool" + ")" * 63), None),
        (ResultSpec(ResultType.JSON, max_bytes=2), {}),
        (ResultSpec(ResultType.CHOICE, labels=("for", "For")), None),
    ],
)
def test_requests_at_the_bounds_are_answerable(spec: ResultSpec, smallest: Any) -> None:
    check_answerable(spec)
    if spec.kind == ResultType.JSON:
        assert len(encode_result(spec, smallest)) > 0  # the smallest object fits
    elif spec.kind == ResultType.ABI and smallest is not None and len(smallest) == len(abi_components(spec.abi_type)):
        assert len(encode_result(spec, smallest)) == spec.max_bytes  # the bound is the smallest encoding


# ---------------------------------------------------------------- integer bounds for grammar-based servers


def test_small_integer_ranges_are_also_given_as_enums_anywhere_in_the_schema() -> None:
    schema = json_schema(ResultSpec(ResultType.ABI, max_bytes=512, abi_type="(int8,uint256,(uint8[2],bool))"))
    value = bounds_as_enums(schema)["properties"]["value"]
    int8, uint256, inner = value["prefixItems"]
    assert int8 == {"type": "integer", "minimum": -128, "maximum": 127, "enum": list(range(-128, 128))}
    assert uint256 == {"type": "integer", "minimum": 0, "maximum": 2**256 - 1}  # too wide: left open
    assert inner["prefixItems"][0]["items"]["enum"] == list(range(256))
    assert inner["prefixItems"][1] == {"type": "boolean"}
    assert "enum" not in schema["properties"]["value"]["prefixItems"][0]  # the schema given is left as it was


@pytest.mark.parametrize(("low", "high", "listed"), [(10, 10, True), (0, MAX_ENUM_RANGE - 1, True),
                                                      (0, MAX_ENUM_RANGE, False), (-40, -20, True)])
def test_a_range_is_listed_up_to_the_most_values(low: int, high: int, listed: bool) -> None:
    value = bounds_as_enums(json_schema(ResultSpec(ResultType.INT, min=low, max=high)))["properties"]["value"]
    assert value.get("enum") == (list(range(low, high + 1)) if listed else None)

