"""What a node's refusal of a raw transaction, or of a simulation, means for it."""

from __future__ import annotations

import enum

from oracle.chain.rpc import RpcError


class Refusal(enum.StrEnum):
    NONE = "none"  # accepted (or already held)
    NONCE_USED = "nonce_used"  # its nonce is taken: by this transaction or another; the receipts decide
    PRICE = "price"  # priced under the base fee: re-price at once
    REPLACEMENT = "replacement"  # the node holds another at this nonce and wants a higher price to replace it
    FUNDS = "funds"  # the signer cannot pay for it: the balance guard holds sending
    PERMANENT = "permanent"  # sending it again cannot help: rebuild it, or fill its nonce
    UNREACHABLE = "unreachable"  # no answer: the next pass looks again


# JSON-RPC's "internal error": the node failed, not the transaction.
_INTERNAL_ERROR = -32603


def classify_refusal(message: str, code: int = -32000) -> Refusal:
    m = message.lower()
    if code == _INTERNAL_ERROR or "internal error" in m or "timeout" in m or "too many requests" in m:
        return Refusal.UNREACHABLE
    if "already known" in m or "already imported" in m or "known transaction" in m:
        return Refusal.NONE
    if "nonce too low" in m:
        return Refusal.NONCE_USED
    if "replacement" in m and "underpriced" in m:
        return Refusal.REPLACEMENT
    if "underpriced" in m or "base fee" in m or "fee cap" in m or "max fee per gas" in m:
        return Refusal.PRICE
    if "insufficient funds" in m:
        return Refusal.FUNDS
    return Refusal.PERMANENT


def reverted(exc: RpcError) -> bool:
    """Whether an eth_call failed because the call reverts (rather than because the node failed)."""
    return exc.revert_data is not None or exc.code == 3 or "revert" in exc.message.lower()
