"""Typed results: the one place that turns a value into the ABI bytes a consumer decodes, and back.

Each result type has one encoding, which a consumer reads with `abi.decode` alone:

    TEXT -> (string)   BOOL -> (bool)   UINT -> (uint256)   INT -> (int256)
    CHOICE -> (uint256 index)   JSON -> (string, compact JSON)   ABI -> the tuple's own encoding

    >>> spec = ResultSpec(ResultType.UINT, min=0, max=100)
    >>> decode_result(spec, encode_result(spec, 42))
    42
"""

from __future__ import annotations

import json
from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import ABITypeError, EncodingError, ParseError
from eth_abi.grammar import TupleType, parse

from oracle.protocol import MAX_ABI_TYPE_BYTES, ResultSpec, ResultType


class ResultError(ValueError):
    """A value does not fit the requested result type or its bounds; the message says how."""


def abi_components(abi_type: str) -> list[str]:
    """The element types of an ABI tuple type string such as "(string,uint8,string)"."""
    if len(abi_type.encode()) > MAX_ABI_TYPE_BYTES:
        raise ResultError(f"ABI type longer than {MAX_ABI_TYPE_BYTES} bytes")
    try:
        parsed = parse(abi_type)
        parsed.validate()
    except (ParseError, ABITypeError) as exc:
        raise ResultError(f"not a valid ABI type: {abi_type!r} ({exc})") from exc
    if not isinstance(parsed, TupleType) or parsed.is_array:
        raise ResultError(f"ABI result type must be a tuple, got {abi_type!r}")
    return [c.to_type_str() for c in parsed.components]


def _check_size(spec: ResultSpec, content_length: int, what: str) -> None:
    if content_length > spec.max_bytes:
        raise ResultError(f"{what} is {content_length} bytes, above the requested maximum of {spec.max_bytes}")


def _check_int(spec: ResultSpec, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResultError(f"expected an integer, got {type(value).__name__}")
    if not spec.min <= value <= spec.max:
        raise ResultError(f"{value} is outside the requested bounds [{spec.min}, {spec.max}]")
    return value


def encode_result(spec: ResultSpec, value: Any) -> bytes:
    """ABI-encode `value` for `spec`, or raise ResultError naming what does not fit."""
    kind = spec.kind
    if kind == ResultType.TEXT:
        if not isinstance(value, str):
            raise ResultError(f"expected text, got {type(value).__name__}")
        _check_size(spec, len(value.encode()), "text")
        return encode(["string"], [value])
    if kind == ResultType.BOOL:
        if not isinstance(value, bool):
            raise ResultError(f"expected true or false, got {type(value).__name__}")
        return encode(["bool"], [value])
    if kind == ResultType.UINT:
        return encode(["uint256"], [_check_int(spec, value)])
    if kind == ResultType.INT:
        return encode(["int256"], [_check_int(spec, value)])
    if kind == ResultType.CHOICE:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(spec.labels):
            raise ResultError(f"choice must be an index in [0, {len(spec.labels) - 1}], got {value!r}")
        return encode(["uint256"], [value])
    if kind == ResultType.JSON:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        _check_size(spec, len(text.encode()), "JSON")
        return encode(["string"], [text])
    if kind == ResultType.ABI:
        components = abi_components(spec.abi_type)
        if not isinstance(value, (list, tuple)) or len(value) != len(components):
            raise ResultError(f"expected {len(components)} values for {spec.abi_type}")
        try:
            data = encode(components, list(value))
        except (EncodingError, TypeError, ValueError, OverflowError) as exc:
            raise ResultError(f"value does not fit {spec.abi_type}: {exc}") from exc
        _check_size(spec, len(data), "ABI-encoded result")
        return data
    raise ResultError(f"unknown result type {kind}")


def decode_result(spec: ResultSpec, data: bytes) -> Any:
    """The value a consumer contract would decode from `data`."""
    kind = spec.kind
    if kind == ResultType.TEXT:
        return decode(["string"], data)[0]
    if kind == ResultType.JSON:
        return json.loads(decode(["string"], data)[0])
    if kind == ResultType.BOOL:
        return decode(["bool"], data)[0]
    if kind in (ResultType.UINT, ResultType.CHOICE):
        return decode(["uint256"], data)[0]
    if kind == ResultType.INT:
        return decode(["int256"], data)[0]
    if kind == ResultType.ABI:
        return tuple(decode(abi_components(spec.abi_type), data))
    raise ResultError(f"unknown result type {kind}")
