"""Calldata for fulfill / fulfillBatch, encoded with eth_abi and the 4-byte selector.

About 20x faster than building it through a web3 contract object; these run once per answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from oracle.abi import input_types, signature
from oracle.protocol import Commitment, ReasonCode, Response, Status

FULFILL_SELECTOR = keccak(text=signature("AIOracle", "fulfill"))[:4]
FULFILL_BATCH_SELECTOR = keccak(text=signature("AIOracle", "fulfillBatch"))[:4]
_FULFILL_TYPES = input_types("AIOracle", "fulfill")
_FULFILL_BATCH_TYPES = input_types("AIOracle", "fulfillBatch")


def fulfill_calldata(response: Response, commitment: Commitment, signature_: bytes) -> bytes:
    return FULFILL_SELECTOR + encode(_FULFILL_TYPES, [response.to_abi(), commitment.to_abi(), signature_])


def fulfill_batch_calldata(items: Sequence[tuple[Response, Commitment, bytes]]) -> bytes:
    return FULFILL_BATCH_SELECTOR + encode(_FULFILL_BATCH_TYPES, [
        [r.to_abi() for r, _, _ in items],
        [c.to_abi() for _, c, _ in items],
        [s for _, _, s in items],
    ])


def decode_fulfilment(data: bytes) -> list[tuple[Response, Commitment, bytes]]:
    """The signed responses a fulfil / fulfilBatch calldata carries (our own stored transactions, re-read
    when one must be rebuilt); empty for anything else, such as a self-transfer that fills a nonce."""
    selector, body = data[:4], data[4:]
    if selector == FULFILL_SELECTOR:
        response, commitment, sig = decode(_FULFILL_TYPES, body)
        items = [(response, commitment, sig)]
    elif selector == FULFILL_BATCH_SELECTOR:
        responses, commitments, sigs = decode(_FULFILL_BATCH_TYPES, body)
        items = list(zip(responses, commitments, sigs, strict=True))
    else:
        return []
    return [(_response(r), _commitment(c), bytes(s)) for r, c, s in items]


def _response(v: Sequence[Any]) -> Response:
    request_id, commitment, status, reason, result, model, receipt = v
    return Response(bytes(request_id), bytes(commitment), Status(status), ReasonCode(reason), bytes(result),
                    bytes(model), bytes(receipt))


def _commitment(v: Sequence[Any]) -> Commitment:
    requester, callback, gas, deadline, max_result_bytes, fee, params_hash = v
    return Commitment(to_checksum_address(requester), to_checksum_address(callback), gas, deadline, max_result_bytes,
                      fee, bytes(params_hash))
