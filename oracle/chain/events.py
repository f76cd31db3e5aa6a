"""Decoding the oracle's events with eth_abi (no web3 contract objects on this path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from oracle.abi import input_types, signature
from oracle.protocol import Commitment, RequestParams

REQUESTED_TOPIC = keccak(text=signature("AIOracle", "Requested"))
FULFILLED_TOPIC = keccak(text=signature("AIOracle", "Fulfilled"))
CANCELLED_TOPIC = keccak(text=signature("AIOracle", "Cancelled"))

# Non-indexed inputs of Requested: nonce, fee, params.
_REQUESTED_DATA = input_types("AIOracle", "Requested")[3:]
_FULFILLED_DATA = input_types("AIOracle", "Fulfilled")[2:]


class EventDecodeError(ValueError):
    """A log claiming to be one of ours does not decode; the message says what was wrong."""


def _topics_and_data(log: Any) -> tuple[list[bytes], bytes]:
    topics = [bytes(t) for t in log["topics"]]
    data = log["data"]
    return topics, bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)


@dataclass(frozen=True)
class RequestedEvent:
    request_id: bytes
    requester: str
    nonce: int
    fee: int
    params: RequestParams

    @property
    def commitment(self) -> Commitment:
        return Commitment.of(self.requester, self.fee, self.params)


@dataclass(frozen=True)
class FulfilledEvent:
    request_id: bytes
    signer: str
    status: int
    reason_code: int
    result_hash: bytes
    receipt_hash: bytes
    callback_success: bool


def decode_requested(log: Any) -> RequestedEvent:
    topics, data = _topics_and_data(log)
    if len(topics) != 4 or topics[0] != REQUESTED_TOPIC:
        raise EventDecodeError("not a Requested event")
    try:
        nonce, fee, params = decode(_REQUESTED_DATA, data)
        return RequestedEvent(topics[1], to_checksum_address(topics[2][12:]), nonce, fee,
                              RequestParams.from_abi(params))
    except Exception as exc:  # eth_abi raises several types; all mean "not decodable"
        raise EventDecodeError(f"Requested event does not decode: {exc}") from exc


def decode_fulfilled(log: Any) -> FulfilledEvent:
    topics, data = _topics_and_data(log)
    if len(topics) != 3 or topics[0] != FULFILLED_TOPIC:
        raise EventDecodeError("not a Fulfilled event")
    try:
        status, reason, result_hash, receipt_hash, ok = decode(_FULFILLED_DATA, data)
    except Exception as exc:
        raise EventDecodeError(f"Fulfilled event does not decode: {exc}") from exc
    return FulfilledEvent(topics[1], to_checksum_address(topics[2][12:]), status, reason, result_hash,
                          receipt_hash, ok)
