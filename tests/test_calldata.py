"""What is written word by word instead of through eth_abi (on every request) is byte for byte what
eth_abi encodes: `fulfillBatch` calldata from each response's pieces (and it reads back to the same
responses), a commitment's hash and a response's EIP-712 struct hash. Pieces of the wrong size or
out of range are refused instead of written misaligned."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.chain.calldata import (
    _FULFILL_BATCH_TYPES,
    FULFILL_BATCH_SELECTOR,
    decode_fulfilment,
    encode_item,
    fulfill_batch_calldata,
)
from oracle.protocol import RESPONSE_TYPEHASH, Commitment, ReasonCode, Response, Status, abi_type_of

word = st.binary(min_size=32, max_size=32)
address = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
responses = st.builds(Response, word, word, st.sampled_from(list(Status)), st.sampled_from(list(ReasonCode)),
                      st.binary(max_size=200), word, word)
commitments = st.builds(Commitment, address, address, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
                        st.integers(0, 2**64 - 1), st.integers(0, 2**256 - 1), word)
items = st.lists(st.tuples(responses, commitments, st.binary(max_size=130)), min_size=1, max_size=6)


def eth_abi_calldata(batch: list[tuple[Response, Commitment, bytes]]) -> bytes:
    return FULFILL_BATCH_SELECTOR + encode(_FULFILL_BATCH_TYPES, [[r.to_abi() for r, _, _ in batch],
                                                                 [c.to_abi() for _, c, _ in batch],
                                                                 [s for _, _, s in batch]])


@settings(max_examples=300, deadline=None)
@given(items)
def test_a_batch_is_encoded_as_eth_abi_encodes_it(batch: list[tuple[Response, Commitment, bytes]]) -> None:
    data = fulfill_batch_calldata(batch)
    assert data == eth_abi_calldata(batch)
    decoded = decode_fulfilment(data)
    assert [(r, s) for r, _, s in decoded] == [(r, s) for r, _, s in batch]
    assert [_lower(c) for _, c, _ in decoded] == [_lower(c) for _, c, _ in batch]


def _lower(c: Commitment) -> tuple[object, ...]:
    return (c.requester.lower(), c.callback.lower(), *c.to_abi()[2:])


def test_pieces_of_the_wrong_size_are_refused() -> None:
    response = Response(b"\x01" * 32, b"\x02" * 32, Status.SUCCESS, ReasonCode.NONE, b"7", b"\x03" * 32, b"\x04" * 32)
    commitment = Commitment("0x" + "11" * 20, "0x" + "22" * 20, 1, 2, 3, 4, b"\x05" * 32)
    with pytest.raises(ValueError, match="request id is 31 bytes"):
        encode_item(Response(b"\x01" * 31, *list(vars(response).values())[1:]), commitment, b"")
    with pytest.raises(ValueError, match="not 20 bytes"):
        encode_item(response, Commitment("0x" + "11" * 19, *list(vars(commitment).values())[1:]), b"")
    with pytest.raises(ValueError, match="params hash"):
        encode_item(response, Commitment("0x" + "11" * 20, "0x" + "22" * 20, 1, 2, 3, 4, b"\x05"), b"")


@settings(max_examples=300, deadline=None)
@given(commitments, responses)
def test_hashes_are_those_of_the_abi_encoding(commitment: Commitment, response: Response) -> None:
    assert commitment.hash() == keccak(encode([abi_type_of("Commitment")], [commitment.to_abi()]))
    assert response.struct_hash() == keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint8", "uint16", "bytes32", "bytes32", "bytes32"],
        [RESPONSE_TYPEHASH, response.request_id, response.commitment, int(response.status),
         int(response.reason_code), keccak(response.result), response.model_used, response.receipt_hash]))


def test_values_out_of_their_abi_range_are_refused() -> None:
    with pytest.raises(ValueError, match="is not a uint32"):
        Commitment("0x" + "11" * 20, "0x" + "22" * 20, 2**32, 2, 3, 4, b"\x05" * 32).hash()
    with pytest.raises(ValueError, match="is not a uint64"):
        Commitment("0x" + "11" * 20, "0x" + "22" * 20, 1, -1, 3, 4, b"\x05" * 32).hash()
    with pytest.raises(ValueError, match="not 20 bytes of hex"):
        Commitment("0xnot-an-address", "0x" + "22" * 20, 1, 2, 3, 4, b"\x05" * 32).hash()
