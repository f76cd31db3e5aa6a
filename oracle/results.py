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
import re
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


def _word(value: int) -> bytes:
    """One ABI word: what eth_abi gives for bool, uint256 and (two's complement) int256, without its
    generic machinery on the hot path. The callers have checked the value's bounds."""
    return (value % 2**256).to_bytes(32, "big")


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
        return _word(int(value))
    if kind in (ResultType.UINT, ResultType.INT):
        return _word(_check_int(spec, value))
    if kind == ResultType.CHOICE:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(spec.labels):
            raise ResultError(f"choice must be an index in [0, {len(spec.labels) - 1}], got {value!r}")
        return _word(value)
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


# ---------------------------------------------------------------- what the model is asked for

ANSWER_FIELD = "value"


def _name(t: Any) -> str:
    return str(t.to_type_str())


def _schema_of(t: Any) -> dict[str, Any]:
    if t.is_array:
        dims = t.arrlist[-1]
        item = _schema_of(t.item_type)
        schema: dict[str, Any] = {"type": "array", "items": item}
        if dims:
            schema["minItems"] = schema["maxItems"] = dims[0]
        return schema
    if isinstance(t, TupleType):
        items = [_schema_of(c) for c in t.components]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items),
                "maxItems": len(items)}
    base, sub = t.base, t.sub
    if base == "bool":
        return {"type": "boolean"}
    if base == "string":
        return {"type": "string"}
    if base == "address":
        return {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
    if base == "bytes":
        if sub:
            return {"type": "string", "pattern": f"^0x[0-9a-fA-F]{{{2 * sub}}}$"}
        return {"type": "string", "pattern": "^0x([0-9a-fA-F]{2})*$"}
    if base in ("uint", "int"):
        bits = sub or 256
        lo, hi = (0, 2**bits - 1) if base == "uint" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return {"type": "integer", "minimum": lo, "maximum": hi}
    raise ResultError(f"ABI type {_name(t)} cannot be asked of a model")


def json_schema(spec: ResultSpec) -> dict[str, Any]:
    """The JSON schema of the model's answer: an object with one field, `value`, of the result type."""
    kind = spec.kind
    value: dict[str, Any]
    if kind == ResultType.TEXT:
        value = {"type": "string", "maxLength": spec.max_bytes}
    elif kind == ResultType.BOOL:
        value = {"type": "boolean"}
    elif kind in (ResultType.UINT, ResultType.INT):
        value = {"type": "integer", "minimum": spec.min, "maximum": spec.max}
    elif kind == ResultType.CHOICE:
        value = {"type": "string", "enum": list(dict.fromkeys(spec.labels))}
    elif kind == ResultType.JSON:
        value = {"type": ["object", "array", "string", "number", "boolean", "null"]}
    elif kind == ResultType.ABI:
        abi_components(spec.abi_type)  # refuses what cannot be encoded
        value = _schema_of(parse(spec.abi_type))
    else:
        raise ResultError(f"unknown result type {kind}")
    return {"type": "object", "properties": {ANSWER_FIELD: value}, "required": [ANSWER_FIELD],
            "additionalProperties": False}


# Most values an integer range may have to be listed as an enum by `bounds_as_enums`: a grammar with
# 1,024 alternatives costs llama.cpp about a second per answer on two cores, 10,000 about seven.
MAX_ENUM_RANGE = 1_024


def bounds_as_enums(schema: dict[str, Any], most: int = MAX_ENUM_RANGE) -> dict[str, Any]:
    """`schema` with every integer range of at most `most` values also given as the enum of those values.

    For servers that turn the schema into a grammar ignoring `minimum` and `maximum` (llama-cpp-python's):
    an enum they do follow, so the model cannot answer out of bounds. A wider range stays open there;
    the daemon refuses an answer outside it as malformed, as for any provider.
    """
    if schema.get("type") == "integer" and "enum" not in schema:
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int) and isinstance(high, int) and 0 <= high - low < most:
            return {**schema, "enum": list(range(low, high + 1))}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if isinstance(value, dict):
            value = bounds_as_enums(value, most)
        elif isinstance(value, list):
            value = [bounds_as_enums(v, most) if isinstance(v, dict) else v for v in value]
        out[key] = value
    return out


# The shortest compact JSON object, "{}": a JSON result must have room for at least that.
MIN_JSON_BYTES = 2


def check_answerable(spec: ResultSpec) -> None:
    """Raise ResultError, saying what to change, if no answer could satisfy `spec`: checked before any
    model is asked, so such a request costs no model call. Also refuses what `json_schema` refuses."""
    kind = spec.kind
    if kind == ResultType.CHOICE:
        first: dict[str, int] = {}
        for i, label in enumerate(spec.labels):
            if label in first:
                raise ResultError(f"choice labels {first[label]} and {i} are both {label!r}: give each label once")
            first[label] = i
    if kind == ResultType.JSON and spec.max_bytes < MIN_JSON_BYTES:
        raise ResultError(f"a JSON result of at most {spec.max_bytes} byte(s) cannot hold an object ({{}} alone "
                          f"takes {MIN_JSON_BYTES}): raise maxBytes to at least {MIN_JSON_BYTES}")
    if kind == ResultType.ABI:
        abi_components(spec.abi_type)
        t = parse(spec.abi_type)
        depth = 1 + _nesting(t)  # the answer object {"value": ...} adds one level
        if depth > MAX_JSON_DEPTH:
            raise ResultError(f"ABI type {spec.abi_type} nests {depth - 1} levels of tuples and arrays; its answer "
                              f"would be JSON {depth} deep and answers are read at most {MAX_JSON_DEPTH} deep: nest "
                              f"at most {MAX_JSON_DEPTH - 1} levels")
        least = _least_bytes(t)
        if least > spec.max_bytes:
            raise ResultError(f"ABI type {spec.abi_type} takes at least {least} bytes encoded, above the requested "
                              f"maxBytes of {spec.max_bytes}: raise maxBytes to at least {least} (within the "
                              f"oracle's maxResultBytes) or ask for a smaller type")
    json_schema(spec)


def _nesting(t: Any) -> int:
    """Levels of tuples and arrays in ABI type `t`: each is one level of JSON array in an answer."""
    if t.is_array:
        return 1 + _nesting(t.item_type)
    if isinstance(t, TupleType):
        return 1 + max((_nesting(c) for c in t.components), default=0)
    return 0


def _least_bytes(t: Any) -> int:
    """The shortest ABI encoding of any value of type `t`: empty strings, bytes and dynamic arrays; fixed
    arrays and tuples in full."""
    if t.is_array:
        dims = t.arrlist[-1]
        if not dims:
            return 32  # T[]: its length word
        item = t.item_type
        return int(dims[0]) * (_head_bytes(item) + (_least_bytes(item) if item.is_dynamic else 0))
    if isinstance(t, TupleType):
        return sum(_head_bytes(c) + (_least_bytes(c) if c.is_dynamic else 0) for c in t.components)
    return 32  # one word: a static value, or the length word of string / bytes


def _head_bytes(t: Any) -> int:
    """What `t` takes in its enclosing tuple or array's head: an offset word if dynamic, else itself."""
    return 32 if t.is_dynamic else _least_bytes(t)


def _abi_value(t: Any, v: Any) -> Any:
    """JSON value -> the Python value eth_abi encodes for ABI type `t`."""
    if t.is_array:
        if not isinstance(v, list):
            raise ResultError(f"expected a list for {_name(t)}")
        return [_abi_value(t.item_type, x) for x in v]
    if isinstance(t, TupleType):
        if not isinstance(v, list) or len(v) != len(t.components):
            raise ResultError(f"expected a list of {len(t.components)} for {_name(t)}")
        return tuple(_abi_value(c, x) for c, x in zip(t.components, v, strict=True))
    if t.base == "bytes":
        if not isinstance(v, str) or not v.startswith("0x"):
            raise ResultError(f"expected 0x-hex for {_name(t)}")
        try:
            return bytes.fromhex(v[2:])
        except ValueError:
            raise ResultError(f"not hex: {v!r}") from None
    if t.base in ("uint", "int") and (isinstance(v, bool) or not isinstance(v, int)):
        raise ResultError(f"expected an integer for {_name(t)}")
    if t.base == "bool" and not isinstance(v, bool):
        raise ResultError("expected true or false")
    if t.base in ("string", "address") and not isinstance(v, str):
        raise ResultError(f"expected a string for {_name(t)}")
    return v


def parse_answer(spec: ResultSpec, text: str) -> Any:
    """The typed value in a model's JSON answer, or ResultError saying why it does not fit.

    The answer is data: it is parsed, never interpreted. Encoding afterwards checks the bounds.
    """
    try:
        document = load_untrusted_json(text)
    except (ValueError, RecursionError):
        raise ResultError("the answer is not JSON (or holds NaN/Infinity)") from None
    if not isinstance(document, dict) or ANSWER_FIELD not in document:
        raise ResultError(f'the answer is not an object with a "{ANSWER_FIELD}" field')
    value = document[ANSWER_FIELD]
    kind = spec.kind
    if kind == ResultType.CHOICE:
        if not isinstance(value, str) or value not in spec.labels:
            raise ResultError(f"{value!r} is not one of the labels")
        return spec.labels.index(value)
    if kind == ResultType.ABI:
        return _abi_value(parse(spec.abi_type), value)
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_JSON_STRUCTURE = re.compile(r'[\[\]{}"\\]')
MAX_JSON_DEPTH = 64


def load_untrusted_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads for text from outside (model answers, provider bodies): deep nesting is refused
    before parsing, because CPython's parser overflows the C stack on it (a crash, not an error),
    and NaN/Infinity are refused because no result type has them."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if text.count("[") + text.count("{") <= max_depth:
        return json.loads(text, parse_constant=_no_constants)  # too few brackets to nest too deep
    depth, in_string, escaped = 0, False, False
    for match in _JSON_STRUCTURE.finditer(text):
        char = match.group()
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = match.end() < len(text) and text[match.end()] in '"\\'
                if escaped:
                    continue
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth}")
        elif char in "]}":
            depth -= 1
    return json.loads(text, parse_constant=_no_constants)


def answer_to_result(spec: ResultSpec, text: str) -> bytes:
    """Model answer text -> the ABI bytes of the result, checked against the request's bounds.
    Anything about the answer that does not fit (lone surrogates, values eth_abi refuses) is a
    ResultError, never another exception."""
    try:
        return encode_result(spec, parse_answer(spec, text))
    except ResultError:
        raise
    except (ValueError, TypeError, OverflowError, UnicodeError, RecursionError) as exc:
        raise ResultError(f"the answer cannot be encoded: {type(exc).__name__}") from None
