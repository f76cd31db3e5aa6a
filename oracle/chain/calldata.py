"""Calldata for fulfill / fulfillBatch, with the 4-byte selector.

`fulfill` is encoded with eth_abi (about 20x faster than through a web3 contract object). A batch is
encoded from each response's own ABI pieces (`encode_item`), written out word by word: a response's
pieces are encoded once and a batch of them is a concatenation, where the transaction manager builds
and measures many candidate batches per transaction (eth_abi took a quarter of the daemon's time at
full load). The layout is checked against the ABI at import and against eth_abi by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from oracle.abi import input_types, signature
from oracle.protocol import Commitment, ReasonCode, Response, Status, bytes32_word, uint_word

FULFILL_SELECTOR = keccak(text=signature("AIOracle", "fulfill"))[:4]
FULFILL_BATCH_SELECTOR = keccak(text=signature("AIOracle", "fulfillBatch"))[:4]
COMMITMENTS_SELECTOR = keccak(text="commitments(bytes32)")[:4]
_FULFILL_TYPES = input_types("AIOracle", "fulfill")
_FULFILL_BATCH_TYPES = input_types("AIOracle", "fulfillBatch")


def fulfill_calldata(response: Response, commitment: Commitment, signature_: bytes) -> bytes:
    return FULFILL_SELECTOR + encode(_FULFILL_TYPES, [response.to_abi(), commitment.to_abi(), signature_])


# The layout `encode_item` writes; an ABI that no longer matches it stops the import here.
_BATCH_LAYOUT = ["(bytes32,bytes32,uint8,uint16,bytes,bytes32,bytes32)[]",
                 "(address,address,uint32,uint64,uint64,uint256,bytes32)[]", "bytes[]"]
if _FULFILL_BATCH_TYPES != _BATCH_LAYOUT:
    raise RuntimeError(f"fulfillBatch takes {_FULFILL_BATCH_TYPES}; calldata.encode_item writes {_BATCH_LAYOUT}")
_RESPONSE_HEAD_BYTES = 7 * 32  # where a response's `result` starts, after its seven head words


def _tail(data: bytes) -> bytes:
    """A dynamic `bytes` value: its length, then the bytes padded to whole words."""
    return uint_word(len(data)) + data + b"\0" * (-len(data) % 32)


EncodedItem = tuple[bytes, bytes, bytes]


def encode_item(response: Response, commitment: Commitment, signature_: bytes) -> EncodedItem:
    """One signed response's elements of the three `fulfillBatch` arrays: the response tuple (dynamic:
    its head, then its result), the commitment tuple (static: seven words), the signature (bytes)."""
    r = response
    encoded_response = (bytes32_word(r.request_id, "request id") + bytes32_word(r.commitment, "commitment hash")
                        + uint_word(int(r.status), 8) + uint_word(int(r.reason_code), 16)
                        + uint_word(_RESPONSE_HEAD_BYTES) + bytes32_word(r.model_used, "modelUsed")
                        + bytes32_word(r.receipt_hash, "receipt hash") + _tail(r.result))
    return encoded_response, commitment.encoded, _tail(signature_)


def _dynamic_array(elements: Sequence[bytes]) -> bytes:
    """An array of dynamic elements: its length, each element's offset (from after the length), the elements."""
    offsets, at = [], 32 * len(elements)
    for element in elements:
        offsets.append(uint_word(at))
        at += len(element)
    return uint_word(len(elements)) + b"".join(offsets) + b"".join(elements)


def batch_calldata(items: Sequence[EncodedItem]) -> bytes:
    responses = _dynamic_array([r for r, _, _ in items])
    commitments = uint_word(len(items)) + b"".join(c for _, c, _ in items)  # static elements sit in line
    signatures = _dynamic_array([s for _, _, s in items])
    head = uint_word(96) + uint_word(96 + len(responses)) + uint_word(96 + len(responses) + len(commitments))
    return FULFILL_BATCH_SELECTOR + head + responses + commitments + signatures


def fulfill_batch_calldata(items: Sequence[tuple[Response, Commitment, bytes]]) -> bytes:
    return batch_calldata([encode_item(r, c, s) for r, c, s in items])


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
