"""EIP-712 signing of responses with the fulfillment signer's key.

coincurve (libsecp256k1) signs ~10x faster than eth-keys in pure Python. The key never leaves this
object and is never part of its repr.
"""

from __future__ import annotations

import coincurve
from eth_utils import keccak, to_checksum_address

# signer_of lives beside typed_data_digest so the client (which may not import chain/) checks signatures too
from oracle.protocol import OffchainResult, Response, signer_of, typed_data_digest

__all__ = ["ResponseSigner", "signer_of"]


class ResponseSigner:
    """Signs responses for one oracle deployment (chain id + contract address)."""

    def __init__(self, private_key: bytes, chain_id: int, oracle: str) -> None:
        if len(private_key) != 32:
            raise ValueError("a signer key is 32 bytes")
        self._key = coincurve.PrivateKey(private_key)
        self.address = to_checksum_address(keccak(self._key.public_key.format(compressed=False)[1:])[-20:])
        self.chain_id = chain_id
        self.oracle = to_checksum_address(oracle)

    def __repr__(self) -> str:
        return f"ResponseSigner(address={self.address}, chain_id={self.chain_id}, oracle={self.oracle})"

    def sign_digest(self, digest: bytes) -> bytes:
        """65-byte r || s || v signature (v = 27/28), low-s as libsecp256k1 always produces."""
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])

    def sign_response(self, response: Response) -> bytes:
        return self.sign_digest(typed_data_digest(self.chain_id, self.oracle, response.struct_hash()))

    def sign_offchain(self, result: OffchainResult) -> bytes:
        """A result sold off-chain, for its consumer's `acceptSignedResult` (checked there by the oracle's
        `verifyOffchainResult`: this deployment's domain, a registered signer)."""
        return self.sign_digest(typed_data_digest(self.chain_id, self.oracle, result.struct_hash()))

