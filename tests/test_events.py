"""The fast readers of the oracle's events agree with a full eth_abi decode, and refuse what is not one."""

from __future__ import annotations

import pytest
from eth_abi import encode
from hypothesis import given
from hypothesis import strategies as st

from oracle.abi import input_types
from oracle.events import FULFILLED_TOPIC, EventDecodeError, decode_fulfilled, decode_params, peek_result
from oracle.protocol import RequestParams, ResultSpec, ResultType

SPECS = [
    ResultSpec(ResultType.TEXT, max_bytes=40), ResultSpec(ResultType.BOOL), ResultSpec(ResultType.UINT, min=3, max=9),
    ResultSpec(ResultType.INT, min=-50, max=-10), ResultSpec(ResultType.CHOICE, labels=("for", "against", "ab✓")),
    ResultSpec(ResultType.JSON, max_bytes=200),
    ResultSpec(ResultType.ABI, max_bytes=512, abi_type="(string,uint256,bool)"),
]
CALLBACK = "0xa513E6E4b8f2a923D98304ec87F64353C4D5C853"


def _blob(spec: ResultSpec, prompt: bytes = b"What is it?", model: str = "cheapest") -> bytes:
    params = RequestParams(CALLBACK, 500_000, 1_800_000_000, 64, 0, 7, model, prompt, spec)
    return encode([input_types("AIOracle", "Requested")[6]], [params.to_abi()])


@pytest.mark.parametrize("spec", SPECS, ids=[s.kind.name for s in SPECS])
def test_peek_result_reads_what_a_full_decode_reads_but_the_labels(spec: ResultSpec) -> None:
    blob = _blob(spec, prompt="ünïcode ".encode() * 50)
    full = decode_params(blob).params
    callback, peeked = peek_result(blob)
    assert callback == full.callback
    assert (peeked.kind, peeked.max_bytes, peeked.min, peeked.max, peeked.abi_type) == \
        (full.result.kind, full.result.max_bytes, full.result.min, full.result.max, full.result.abi_type)


@pytest.mark.parametrize("cut", [0, 31, 200, "inside the ABI type"])
def test_peek_result_refuses_a_blob_cut_before_what_it_reads(cut: int | str) -> None:
    blob = _blob(SPECS[-1])
    at = blob.index(b"(string,uint256,bool)") + 5 if isinstance(cut, str) else cut
    with pytest.raises(EventDecodeError):
        peek_result(blob[:at])


@given(st.integers(0, 255), st.integers(0, 65535), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32), st.booleans())
def test_decode_fulfilled_reads_the_words_as_eth_abi_does(status: int, reason: int, result_hash: bytes,
                                                          receipt_hash: bytes, ok: bool) -> None:
    data = encode(["uint8", "uint16", "bytes32", "bytes32", "bool"], [status, reason, result_hash, receipt_hash, ok])
    log = {"topics": [FULFILLED_TOPIC, b"\1" * 32, bytes(12) + bytes.fromhex(CALLBACK[2:])], "data": data}
    event = decode_fulfilled(log)
    assert (event.status, event.reason_code, event.result_hash, event.receipt_hash, event.callback_success) == \
        (status, reason, result_hash, receipt_hash, ok)


@pytest.mark.parametrize("data", [b"", bytes(159), bytes(161), bytes(32) + b"\1" * 32 + bytes(96),
                                  bytes(128) + bytes(31) + b"\2", b"\1" * 160])
def test_decode_fulfilled_refuses_what_is_not_five_words_in_range(data: bytes) -> None:
    log = {"topics": [FULFILLED_TOPIC, b"\1" * 32, bytes(32)], "data": data}
    with pytest.raises(EventDecodeError):
        decode_fulfilled(log)
