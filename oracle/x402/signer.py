"""The payment wallet's signer for the x402 SDK: EIP-712 with coincurve, EIP-3009 authorizations fast.

The SDK builds the typed data (domain from the 402's `extra`, the authorization message) and asks its
signer to sign it. The SDK's own signer goes through eth_account's generic EIP-712 encoder (~1 ms per
signature here); `TransferWithAuthorization` has six fixed fields, so its struct hash is six words and
the domain separator is kept per token, and libsecp256k1 signs. Any other typed data takes the
generic path. A test holds both paths to the same signature.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import coincurve
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address
from x402.mechanisms.evm.types import TypedDataDomain, TypedDataField

_DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
_TRANSFER_TYPEHASH = keccak(text="TransferWithAuthorization(address from,address to,uint256 value,"
                                 "uint256 validAfter,uint256 validBefore,bytes32 nonce)")
_TRANSFER_FIELDS = [("from", "address"), ("to", "address"), ("value", "uint256"), ("validAfter", "uint256"),
                    ("validBefore", "uint256"), ("nonce", "bytes32")]


@lru_cache(maxsize=256)
def _domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    return keccak(_DOMAIN_TYPEHASH + keccak(text=name) + keccak(text=version) + chain_id.to_bytes(32, "big")
                  + bytes(12) + bytes.fromhex(verifying_contract.removeprefix("0x")))


def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The EIP-712 separator of a (name, version, chainId, verifyingContract) domain, as EIP-3009 tokens
    build theirs."""
    return _domain_separator(name, version, chain_id, verifying_contract.lower())


def transfer_digest(authorization: dict[str, Any], separator: bytes) -> bytes:
    """The EIP-712 digest an EIP-3009 `TransferWithAuthorization` is signed over, in the domain whose
    separator is `separator` (what the token recovers the payer from)."""
    struct = keccak(_TRANSFER_TYPEHASH + b"".join(_word(authorization[n], t) for n, t in _TRANSFER_FIELDS))
    return keccak(b"\x19\x01" + separator + struct)


class DomainMismatch(ValueError):
    """Asked to sign for an EIP-712 domain other than the one the payment was checked against."""


def _word(value: Any, kind: str) -> bytes:
    if kind == "address":
        return bytes(12) + bytes.fromhex(str(value).removeprefix("0x"))
    if kind == "bytes32":
        raw = value if isinstance(value, (bytes, bytearray)) else bytes.fromhex(str(value).removeprefix("0x"))
        if len(raw) != 32:
            raise ValueError("bytes32 value is not 32 bytes")
        return bytes(raw)
    return int(value).to_bytes(32, "big")


class WalletSigner:
    """The SDK's ClientEvmSigner protocol: `address` and `sign_typed_data`."""

    def __init__(self, key: bytes) -> None:
        self._key = coincurve.PrivateKey(key)
        self._raw = key
        self.address = to_checksum_address(keccak(self._key.public_key.format(compressed=False)[1:])[-20:])

    def __repr__(self) -> str:
        return f"WalletSigner({self.address})"

    def sign_typed_data(self, domain: TypedDataDomain, types: dict[str, list[TypedDataField]], primary_type: str,
                        message: dict[str, Any]) -> bytes:
        fields = [(f.name, f.type) for f in types.get(primary_type, [])]
        if primary_type == "TransferWithAuthorization" and fields == _TRANSFER_FIELDS:
            separator = _domain_separator(domain.name, domain.version, int(domain.chain_id),
                                          str(domain.verifying_contract))
            sig = self._key.sign_recoverable(transfer_digest(message, separator), hasher=None)
            return sig[:64] + bytes([sig[64] + 27])
        return self.sign_generic(domain, types, message)

    def sign_message(self, text: str) -> bytes:
        """An EIP-191 personal_sign of `text` (r || s || v, v 27 or 28)."""
        return bytes(Account.sign_message(encode_defunct(text=text), self._raw).signature)

    def bound_to(self, separator: bytes) -> DomainBoundSigner:
        """This signer, refusing any typed data whose domain separator is not `separator`."""
        return DomainBoundSigner(self, separator)

    def sign_generic(self, domain: TypedDataDomain, types: dict[str, list[TypedDataField]],
                     message: dict[str, Any]) -> bytes:
        """eth_account's EIP-712 encoder: any typed data (and the reference the fast path is tested against)."""
        types_dict = {name: [{"name": f.name, "type": f.type} for f in fs] for name, fs in types.items()}
        domain_dict = {"name": domain.name, "version": domain.version, "chainId": domain.chain_id,
                       "verifyingContract": domain.verifying_contract}
        signed = Account.sign_typed_data(self._raw, domain_data=domain_dict, message_types=types_dict,
                                         message_data=message)
        return bytes(signed.signature)


class DomainBoundSigner:
    """The SDK's signer for one payment: it signs only for the domain the payment was checked against,
    whatever domain the SDK builds (e.g. from defaults of its own when a 402's `extra` lacks one)."""

    def __init__(self, signer: WalletSigner, separator: bytes) -> None:
        self._signer = signer
        self._separator = separator
        self.address = signer.address

    def sign_typed_data(self, domain: TypedDataDomain, types: dict[str, list[TypedDataField]], primary_type: str,
                        message: dict[str, Any]) -> bytes:
        asked = domain_separator(str(domain.name), str(domain.version), int(domain.chain_id),
                                 str(domain.verifying_contract))
        if asked != self._separator:
            raise DomainMismatch(f"EIP-712 domain (name {domain.name!r}, version {domain.version!r}) is not the "
                                 "token's own")
        return self._signer.sign_typed_data(domain, types, primary_type, message)
