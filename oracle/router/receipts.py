"""Receipts: how an answer was made, as canonical JSON whose keccak256 is signed on-chain.

Canonical form: UTF-8, keys sorted, separators "," and ":", no floats, bytes as 0x-hex, integers
above 2^53 as decimal strings (so every JSON reader gets them exactly).
"""

from __future__ import annotations

import json
from typing import Any

from eth_utils import keccak

MAX_SAFE_INT = 2**53


def _canonical(value: Any) -> Any:
    kind = type(value)  # exact types first: this runs for every receipt, over every field
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return str(value) if value > MAX_SAFE_INT or value < -MAX_SAFE_INT else value
    if kind is dict:
        return {k if type(k) is str else str(k): _canonical(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_canonical(v) for v in value]
    if isinstance(value, int):  # IntEnum and other int subclasses
        return _canonical(int(value))
    if isinstance(value, float):
        raise TypeError("receipts hold no floats: use integers (milliseconds, micro-units)")
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    raise TypeError(f"cannot put {type(value).__name__} in a receipt")


def canonical_json(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def receipt_hash(body: str) -> bytes:
    return keccak(body.encode())
