"""JSON-RPC to the payment networks: the token's own EIP-712 domain, heads, authorizations and their logs.

One per process, shared by the paying client and the reconciler:

    networks = PaymentNetworks(session, settings)
    separator = await networks.domain_separator("eip155:8453", usdc)   # cached per (network, asset)
    logs = await networks.logs("eip155:8453", usdc, topics, from_block)  # bounded ranges, halved when refused

The domain separator is what the token itself checks signatures against, so a 402 whose `extra` names
another domain is caught before anything is signed. Tokens give it as `DOMAIN_SEPARATOR()` (USDC and
most EIP-3009 tokens) or as its parts through EIP-5267 `eip712Domain()`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from eth_abi import decode, encode
from eth_utils import keccak

from oracle.chain.log_range import LogRange
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import X402Settings

log = logging.getLogger(__name__)

_DOMAIN_SEPARATOR = keccak(text="DOMAIN_SEPARATOR()")[:4]
_EIP712_DOMAIN = keccak(text="eip712Domain()")[:4]
_AUTHORIZATION_STATE = keccak(text="authorizationState(address,bytes32)")[:4]
# EIP-5267: bit i of `fields` says the i-th of these is part of the domain.
_DOMAIN_FIELDS = (("name", "string"), ("version", "string"), ("chainId", "uint256"),
                  ("verifyingContract", "address"), ("salt", "bytes32"))


class NetworkError(Exception):
    """The payment network's node could not answer (unreachable, timed out, an error, not JSON-RPC)."""


class PaymentNetworks:
    def __init__(self, session: aiohttp.ClientSession, settings: X402Settings) -> None:
        self.settings = {n.network: n for n in settings.networks}
        self._clients = {n.network: ChainClient(session, n.rpc_url, n.rpc_timeout) for n in settings.networks}
        self._separators: dict[tuple[str, str], bytes | None] = {}  # None: the token publishes no domain
        self._heads: dict[str, int] = {}
        self._ranges = {n.network: LogRange(n.max_log_range) for n in settings.networks}

    def known_head(self, network: str) -> int:
        """The highest block seen on `network` so far (0 if none): a lower bound for anything signed now."""
        return self._heads.get(network, 0)

    async def rpc(self, network: str, method: str, params: list[Any]) -> Any:
        client = self._clients.get(network)
        if client is None:
            raise NetworkError(f"network {network} is not configured")
        try:
            return await client.call(method, params)
        except (RpcError, RpcUnavailable) as exc:
            raise NetworkError(str(exc)[:300]) from None

    async def head(self, network: str) -> int:
        number = int(await self.rpc(network, "eth_blockNumber", []), 16)
        self._heads[network] = max(number, self._heads.get(network, 0))
        return number

    async def call(self, network: str, to: str, data: bytes, block: str = "latest") -> bytes:
        result = await self.rpc(network, "eth_call", [{"to": to, "data": "0x" + data.hex()}, block])
        if not isinstance(result, str) or not result.startswith("0x"):
            raise NetworkError(f"eth_call: not hex data: {str(result)[:80]}")
        return bytes.fromhex(result[2:])

    async def domain_separator(self, network: str, asset: str) -> bytes | None:
        """The token's own EIP-712 domain separator, or None if it publishes none. Raises NetworkError
        when the node cannot say (nothing is cached then)."""
        key = (network, asset.lower())
        if key in self._separators:
            return self._separators[key]
        if network not in self._heads:
            await self.head(network)  # a lower bound for the blocks of payments signed from now on
        separator = await self._read_separator(network, asset)
        self._separators[key] = separator
        return separator

    async def _read_separator(self, network: str, asset: str) -> bytes | None:
        try:
            raw = await self.call(network, asset, _DOMAIN_SEPARATOR)
            if len(raw) == 32:
                return raw
        except NetworkError as exc:
            if not _reverted(exc):
                raise
        try:
            raw = await self.call(network, asset, _EIP712_DOMAIN)
        except NetworkError as exc:
            if not _reverted(exc):
                raise
            return None
        try:
            fields, name, version, chain_id, verifying, salt, _ = decode(
                ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"], raw)
        except Exception:  # not an EIP-5267 answer (an empty return from a contract without it)
            return None
        values = {"name": keccak(text=name), "version": keccak(text=version), "chainId": chain_id,
                  "verifyingContract": verifying, "salt": salt}
        present = [(n, t) for i, (n, t) in enumerate(_DOMAIN_FIELDS) if fields[0] >> i & 1]
        type_hash = keccak(text=f"EIP712Domain({','.join(f'{t} {n}' for n, t in present)})")
        encoded = encode(["bytes32"] + ["bytes32" if t == "string" else t for n, t in present],
                         [type_hash] + [values[n] for n, _ in present])
        return keccak(encoded)

    async def authorization_used(self, network: str, asset: str, payer: str, nonce: str) -> bool:
        data = _AUTHORIZATION_STATE + encode(["address", "bytes32"], [payer, bytes.fromhex(nonce[2:])])
        return int.from_bytes(await self.call(network, asset, data), "big") != 0

    async def receipt(self, network: str, tx_hash: str) -> dict[str, Any] | None:
        result = await self.rpc(network, "eth_getTransactionReceipt", [tx_hash])
        return result if isinstance(result, dict) else None

    async def logs(self, network: str, address: str, topics: Sequence[str | None], from_block: int,
                   to_block: int | None = None) -> list[dict[str, Any]]:
        """Logs from `from_block` to `to_block` (the head if None), in ranges of at most the network's
        `max_log_range` blocks, halved when the node refuses or times out (as public nodes bound what
        one query may cost) and grown back after a success (`LogRange`)."""
        end_block = await self.head(network) if to_block is None else to_block
        found: list[dict[str, Any]] = []
        start = max(0, from_block)
        ranges = self._ranges[network]
        while start <= end_block:
            end = ranges.end(start, end_block)
            try:
                got = await self.rpc(network, "eth_getLogs", [{"address": address, "topics": list(topics),
                                                              "fromBlock": hex(start), "toBlock": hex(end)}])
            except NetworkError as exc:
                if not ranges.failed(start, end):
                    raise
                log.info("%s: getLogs %d-%d failed (%s); range now %d", network, start, end, exc, ranges.size)
                continue
            if not isinstance(got, list):
                raise NetworkError(f"eth_getLogs: not a list: {str(got)[:80]}")
            found.extend(entry for entry in got if isinstance(entry, dict))
            start = end + 1
            ranges.succeeded()
        return found


def _reverted(exc: NetworkError) -> bool:
    """Did the node answer that the call reverted (no such function), rather than fail to answer?"""
    text = str(exc).lower()
    return "revert" in text or "execution" in text or "invalid opcode" in text
