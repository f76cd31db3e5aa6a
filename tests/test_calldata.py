"""`fulfillBatch` calldata written word by word from each response's pieces is byte for byte what eth_abi
encodes, reads back to the same responses, and refuses pieces of the wrong size instead of writing a
misaligned call."""

from __future__ import annotations

import pytest
from eth_abi import encode
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.chain.calldata import (
    _FULFILL_BATCH_TYPES,
    FULFILL_BATCH_SELECTOR,
    decode_fulfilment,
    encode_item,
    fulfill_batch_calldata,
)
from oracle.protocol import Commitment, ReasonCode, Response, Status

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
