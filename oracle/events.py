"""Decoding the oracle's events with eth_abi (no web3 contract objects on this path): the one decoder
of `Requested`, `Fulfilled` and `Cancelled` for the daemon and the client, beside `protocol`.

Logs come from the chain and are untrusted. The contract guarantees the model spec and ABI type are
ASCII, but not that choice labels are valid UTF-8, so strings are decoded as bytes first: a request
with undecodable text still decodes (and is refused with a reason) instead of being lost. The params
hash is taken from the emitted bytes themselves, so it matches the contract's commitment exactly; the
event also carries it (`paramsHash`), and a full decode checks the two agree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from oracle.abi import input_types, signature
from oracle.protocol import Commitment, RequestParams, ResultSpec, ResultType

REQUESTED_TOPIC = keccak(text=signature("AIOracle", "Requested"))
FULFILLED_TOPIC = keccak(text=signature("AIOracle", "Fulfilled"))
CANCELLED_TOPIC = keccak(text=signature("AIOracle", "Cancelled"))
SKIPPED_TOPIC = keccak(text=signature("AIOracle", "FulfillmentSkipped"))

# Non-indexed inputs of Requested are (nonce, fee, paramsHash, params); strings read as bytes (same encoding).
_REQUESTED_INPUTS = input_types("AIOracle", "Requested")
if _REQUESTED_INPUTS[3:6] != ["uint64", "uint256", "bytes32"]:
    raise RuntimeError(f"Requested event inputs are {_REQUESTED_INPUTS}; peek_requested reads another layout")
_PARAMS_TYPE = _REQUESTED_INPUTS[6].replace("string", "bytes")
# The data: three head words, then the offset of params (always 4 * 32), then params.
_PARAMS_AT = 4 * 32
_FULFILLED_DATA = input_types("AIOracle", "Fulfilled")[2:]
_CANCELLED_DATA = input_types("AIOracle", "Cancelled")[2:]
_ABI_OFFSET_WORD = (32).to_bytes(32, "big")


class EventDecodeError(ValueError):
    """A log claiming to be one of ours does not decode; the message says what was wrong."""


@functools.lru_cache(maxsize=4_096)
def _checksum(address: bytes | str) -> str:
    """(the same requesters and callbacks come again and again: each is checksummed once)"""
    return to_checksum_address(address)


def _hex_or_bytes(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def log_topics_and_data(log: Any) -> tuple[list[bytes], bytes]:
    return [_hex_or_bytes(t) for t in log["topics"]], _hex_or_bytes(log["data"])


def _text(raw: bytes, field: str, problems: list[str]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{field} is not valid UTF-8")
        return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class DecodedParams:
    params: RequestParams
    params_hash: bytes  # keccak256(abi.encode(params)) of the emitted bytes
    problems: tuple[str, ...]  # text fields that are not valid UTF-8, for the refusal reason


def decode_params(blob: bytes) -> DecodedParams:
    """Decode `abi.encode(RequestParams)` (as stored), tolerating invalid UTF-8 in text fields."""
    try:
        (raw,) = decode([_PARAMS_TYPE], blob)
    except Exception as exc:  # eth_abi raises several types; all mean "not decodable"
        raise EventDecodeError(f"request params do not decode: {exc}") from exc
    callback, gas, deadline, max_tokens, temperature, seed, spec, prompt, result = raw
    kind, max_bytes, lo, hi, labels, abi_type = result
    problems: list[str] = []
    model_spec = _text(spec, "model spec", problems)
    texts = tuple(_text(label, f"choice label {i}", problems) for i, label in enumerate(labels))
    abi_text = _text(abi_type, "ABI type", problems)
    if kind not in ResultType._value2member_map_:
        raise EventDecodeError(f"unknown result type {kind}")
    spec_obj = ResultSpec.from_abi((kind, max_bytes, lo, hi, texts, abi_text))
    params = RequestParams(_checksum(callback), gas, deadline, max_tokens, temperature, seed, model_spec,
                           bytes(prompt), spec_obj)
    return DecodedParams(params, keccak(blob), tuple(problems))


@dataclass(frozen=True)
class RequestedEvent:
    request_id: bytes
    requester: str
    nonce: int
    fee: int
    params_blob: bytes  # abi.encode(params), as emitted
    decoded: DecodedParams  # its params_hash is the event's own, checked against the emitted bytes

    @property
    def params(self) -> RequestParams:
        return self.decoded.params

    @property
    def commitment(self) -> Commitment:
        return Commitment.of(self.requester, self.fee, self.decoded.params, self.decoded.params_hash)


@dataclass(frozen=True)
class FulfilledEvent:
    request_id: bytes
    signer: str
    status: int
    reason_code: int
    result_hash: bytes
    receipt_hash: bytes
    callback_success: bool


@dataclass(frozen=True)
class CancelledEvent:
    request_id: bytes
    requester: str
    refund: int


def decode_requested(log: Any) -> RequestedEvent:
    header = peek_requested(log)
    try:
        decoded = decode_params(header.params_blob)
    except EventDecodeError as exc:
        raise EventDecodeError(f"Requested event does not decode: {exc}") from exc
    if decoded.params_hash != header.params_hash:
        raise EventDecodeError(f"Requested event does not decode: its paramsHash 0x{header.params_hash.hex()} is "
                               f"not the hash of its params 0x{decoded.params_hash.hex()}")
    return RequestedEvent(header.request_id, header.requester, header.nonce, header.fee, header.params_blob, decoded)


@dataclass(frozen=True)
class RequestedHeader:
    """What storing a request needs, read without decoding its params (the pipeline decodes them once)."""

    request_id: bytes
    requester: str
    nonce: int
    fee: int
    deadline: int
    params_hash: bytes  # as the event carries it: keccak256(abi.encode(params))
    params_blob: bytes


def peek_requested(log: Any) -> RequestedHeader:
    topics, data = log_topics_and_data(log)
    if len(topics) != 4 or topics[0] != REQUESTED_TOPIC:
        raise EventDecodeError("not a Requested event")
    at = _PARAMS_AT
    if len(data) < at + 3 * 32 or int.from_bytes(data[at - 32:at], "big") != at:
        raise EventDecodeError(f"Requested event does not decode: too short or params not at offset {at}")
    nonce, fee = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")
    # params = (callback, callbackGasLimit, deadline, ...): the deadline is the head's third word
    deadline = int.from_bytes(data[at + 64:at + 96], "big")
    if nonce >= 2**64 or deadline >= 2**64:
        raise EventDecodeError("Requested event does not decode: nonce or deadline out of range")
    return RequestedHeader(topics[1], _checksum(topics[2][12:]), nonce, fee, deadline, data[64:96],
                           _ABI_OFFSET_WORD + data[at:])


def decode_fulfilled(log: Any) -> FulfilledEvent:
    """Five static words (uint8 status, uint16 reason, two hashes, bool), read by slicing: a follower
    decodes thousands a second."""
    topics, data = log_topics_and_data(log)
    if len(topics) != 3 or topics[0] != FULFILLED_TOPIC:
        raise EventDecodeError("not a Fulfilled event")
    if _FULFILLED_DATA != ["uint8", "uint16", "bytes32", "bytes32", "bool"]:
        raise RuntimeError(f"Fulfilled carries {_FULFILLED_DATA}: update decode_fulfilled")
    words = [data[i:i + 32] for i in range(0, 160, 32)]
    if len(data) != 160 or int.from_bytes(words[0], "big") > 0xFF or int.from_bytes(words[1], "big") > 0xFFFF \
            or int.from_bytes(words[4], "big") > 1:
        raise EventDecodeError(f"Fulfilled event does not decode: {len(data)} bytes of data, not five ABI words")
    return FulfilledEvent(topics[1], _checksum(topics[2][12:]), words[0][-1], int.from_bytes(words[1], "big"),
                          words[2], words[3], words[4][-1] == 1)


def peek_result(blob: bytes) -> tuple[str, ResultSpec]:
    """The callback and the result spec (without its choice labels) of `abi.encode(params)`, read from
    their words alone: what decoding a result needs, at a small part of a full decode's cost. Offsets
    are checked to lie inside the blob; anything else is an EventDecodeError."""
    def word(at: int) -> int:
        if at < 0 or at + 32 > len(blob):
            raise EventDecodeError("request params do not decode: an offset points outside them")
        return int.from_bytes(blob[at:at + 32], "big")

    head = word(0)  # the tuple's offset (32)
    callback = _checksum(blob[head + 12:head + 32])
    result_at = head + word(head + 8 * 32)
    kind, max_bytes, lo, hi = (word(result_at + i * 32) for i in range(4))
    if kind not in ResultType._value2member_map_:
        raise EventDecodeError(f"unknown result type {kind}")
    abi_at = result_at + word(result_at + 5 * 32)
    size = word(abi_at)
    if abi_at + 32 + size > len(blob):
        raise EventDecodeError("request params do not decode: the ABI type runs past them")
    abi_type = blob[abi_at + 32:abi_at + 32 + size].decode("utf-8", "replace")
    spec = ResultSpec.from_abi((kind, max_bytes, lo, hi, (), abi_type))
    return callback, spec


def decode_cancelled(log: Any) -> CancelledEvent:
    topics, data = log_topics_and_data(log)
    if len(topics) != 3 or topics[0] != CANCELLED_TOPIC:
        raise EventDecodeError("not a Cancelled event")
    try:
        (refund,) = decode(_CANCELLED_DATA, data)
    except Exception as exc:
        raise EventDecodeError(f"Cancelled event does not decode: {exc}") from exc
    return CancelledEvent(topics[1], _checksum(topics[2][12:]), refund)
