"""The gas of a fulfilment transaction: one bound, used for its gas limit, the batch bound and the fee check.

A transaction's gas is its intrinsic gas (21,000 plus 4 per calldata token, where a zero byte is one
token and any other byte four) plus what it executes; under EIP-7623 (Prague) it pays at least the
calldata floor, 21,000 plus 10 per token, whatever it executes. A limit below the floor is accepted by
some nodes and never mined, holding every later nonce: the limit is never below it.

    limit = fulfilment_gas([callback_gas], calldata, overhead)
"""

from __future__ import annotations

from collections.abc import Iterable

from oracle.chain.calldata import fulfill_batch_calldata
from oracle.protocol import Commitment, ReasonCode, Response, Status

TX_BASE_GAS = 21_000
STANDARD_GAS_PER_TOKEN = 4
FLOOR_GAS_PER_TOKEN = 10
SELF_TRANSFER_GAS = TX_BASE_GAS
# Per response besides the oracle's configured overhead: the contract's check that the callback gets
# its gas (EIP-150 keeps back 1/64) and the call itself.
CALLBACK_RESERVE_GAS = 5_000
# Per 32-byte word of calldata: copying it to memory, hashing the result twice (its own hash and the
# EIP-712 digest) and handing it to the callback; memory grows quadratically over the whole call.
EXECUTION_GAS_PER_WORD = 16
MEMORY_QUADRATIC_DIVISOR = 512


def calldata_tokens(data: bytes) -> int:
    zeros = data.count(0)
    return zeros + 4 * (len(data) - zeros)


def intrinsic_gas(data: bytes) -> int:
    """What the transaction pays before executing anything (EIP-2028 calldata)."""
    return TX_BASE_GAS + STANDARD_GAS_PER_TOKEN * calldata_tokens(data)


def floor_gas(data: bytes) -> int:
    """The least gas a transaction carrying `data` pays (EIP-7623)."""
    return TX_BASE_GAS + FLOOR_GAS_PER_TOKEN * calldata_tokens(data)


def response_execution_gas(callback_gas_limit: int, overhead: int) -> int:
    """One response's execution besides its calldata: the oracle's work and the callback's full limit."""
    return overhead + callback_gas_limit * 64 // 63 + CALLBACK_RESERVE_GAS


def fulfilment_gas(callback_gas_limits: Iterable[int], data: bytes, overhead: int) -> int:
    """An upper bound on the gas of a fulfil / fulfilBatch transaction carrying `data`: the gas limit it is
    sent with (unused gas is not paid for), never below the calldata floor."""
    words = (len(data) + 31) // 32
    execution = (sum(response_execution_gas(g, overhead) for g in callback_gas_limits)
                 + EXECUTION_GAS_PER_WORD * words + words * words // MEMORY_QUADRATIC_DIVISOR)
    return max(intrinsic_gas(data) + execution, floor_gas(data))


def marginal_gas(callback_gas_limit: int, data: bytes, overhead: int, batch_size: int) -> int:
    """One response's share of a transaction carrying `batch_size` responses: its own calldata (`data`,
    the response sent alone) with the floor, its execution and callback gas, and its part of the base."""
    return fulfilment_gas([callback_gas_limit], data, overhead) - TX_BASE_GAS + -(-TX_BASE_GAS // batch_size)


def response_gas_bound(request_id: bytes, commitment: Commitment, overhead: int) -> int:
    """The most gas a response to one request can cost sent alone, before its answer is known: its result
    as long as the commitment allows, of non-zero bytes (the dearest calldata), the callback's full limit."""
    word = b"\xff" * 32
    result = b"\xff" * commitment.max_result_bytes
    response = Response(request_id, word, Status.SUCCESS, ReasonCode.NONE, result, word, word)
    data = fulfill_batch_calldata([(response, commitment, b"\xff" * 65)])  # as the daemon sends it
    return fulfilment_gas([commitment.callback_gas_limit], data, overhead)
