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
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INT else value
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
