"""Receipts are canonical JSON: sorted keys, compact separators, no floats, bytes as 0x-hex, and
integers beyond 2^53 as strings, so every reader rebuilds the exact bytes whose keccak is signed."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from oracle.router.receipts import canonical_json, receipt_hash


def test_canonical_form() -> None:
    body = canonical_json({"b": 1, "a": [b"\x01\xff", 2**53, 2**53 + 1, -(2**60)], "c": {"z": None, "y": "é"}})
    assert body == '{"a":["0x01ff",9007199254740992,"9007199254740993","-1152921504606846976"],"b":1,' \
                   '"c":{"y":"é","z":null}}'
    assert receipt_hash(body) == keccak(body.encode())


def test_same_content_same_bytes_whatever_the_order() -> None:
    assert canonical_json({"x": 1, "y": [1, 2]}) == canonical_json({"y": (1, 2), "x": 1})


@pytest.mark.parametrize("value", [1.5, {"latency": 0.1}, [object()]])
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        canonical_json(value)
