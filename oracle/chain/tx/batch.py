"""What a fulfilment transaction carries: signed responses, their calldata, its gas, and each
response's share of that gas (what its fee has to cover)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from oracle.chain.calldata import EncodedItem, batch_calldata, decode_fulfilment, encode_item
from oracle.chain.gas import fulfilment_gas, marginal_gas
from oracle.protocol import Commitment, Response
from oracle.store import StoredTx, request_key

# Nodes refuse larger transactions (geth: 128 KiB); a batch stays under this much calldata.
MAX_TX_DATA_BYTES = 120_000
# A response's calldata beside its result (commitment, signature, ABI framing), for the size bound.
RESPONSE_FRAMING_BYTES = 1_000


@dataclass(frozen=True)
class ReadyResponse:
    key: str
    response: Response
    commitment: Commitment
    signature: bytes
    deadline: int

    @property
    def size(self) -> int:
        return len(self.response.result) + RESPONSE_FRAMING_BYTES

    @cached_property
    def encoded(self) -> EncodedItem:
        """Its pieces of the batch calldata, encoded once however many batches it is weighed in."""
        return encode_item(self.response, self.commitment, self.signature)


def calldata(batch: Sequence[ReadyResponse]) -> bytes:
    # fulfillBatch even for one response: a response whose request a reorg removed or replaced after
    # it was checked is skipped in the block (FulfillmentSkipped) instead of reverting the
    # transaction, for about 1,800 gas more than `fulfill`.
    return batch_calldata([i.encoded for i in batch])


def gas_limit(batch: Sequence[ReadyResponse], overhead: int) -> int:
    return fulfilment_gas([i.commitment.callback_gas_limit for i in batch], calldata(batch), overhead)


def shares(batch: Sequence[ReadyResponse], overhead: int) -> dict[str, int]:
    """Each response's gas in this batch: its own calldata (with the floor), execution and callback,
    its part of the base, and its part of the batch's framing (what no single response accounts for)."""
    own = {i.key: marginal_gas(i.commitment.callback_gas_limit, calldata([i]), overhead, len(batch)) for i in batch}
    framing = max(0, gas_limit(batch, overhead) - sum(own.values())) if len(batch) > 1 else 0
    return {k: g + -(-framing // len(batch)) for k, g in own.items()}


def carried(tx: StoredTx, oracle: str) -> list[ReadyResponse]:
    """The signed responses a stored transaction of ours carries, read back from its calldata."""
    data = bytes(TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()["data"])
    return [ReadyResponse(request_key(tx.chain_id, oracle, response.request_id), response, commitment, sig,
                          commitment.deadline) for response, commitment, sig in decode_fulfilment(data)]
