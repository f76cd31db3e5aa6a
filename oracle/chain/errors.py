"""Selectors of the errors the transaction manager acts on. Naming any revert is `oracle.abi.errors`."""

from __future__ import annotations

from eth_utils import keccak

# Why `fulfillBatch` skipped a response whose request is not (or no longer) the one it answers.
UNKNOWN_REQUEST = keccak(text="UnknownRequest(bytes32)")[:4]
COMMITMENT_MISMATCH = keccak(text="CommitmentMismatch(bytes32)")[:4]
