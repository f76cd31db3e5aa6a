"""Start-up checks of the oracle a chain's config names: there is code at the address, the code is an
`AIOracle` signing under the domain this daemon signs for, and the daemon's signer is registered on it.
Each failure is a `ConfigError` that says what to fix (a wrong address, `oracle deploy`, `oracle admin`)."""

from __future__ import annotations

import functools

from eth_abi import decode, encode
from eth_utils import keccak

from oracle.chain.fee_schedule import patiently
from oracle.chain.rpc import ChainClient, RpcError
from oracle.config import ChainSettings, ConfigError
from oracle.protocol import domain_separator

_DOMAIN_SEPARATOR = keccak(text="domainSeparator()")[:4]
_PAYEE_OF = keccak(text="payeeOf(address)")[:4]


async def check_oracle(rpc: ChainClient, chain: ChainSettings, signer: str) -> None:
    where = f"chains[{chain.name}].oracle"
    code = await patiently(lambda: rpc.call("eth_getCode", [chain.oracle, "latest"]))
    if code in (None, "0x", "0x0"):
        raise ConfigError(f"{where}: there is no contract at {chain.oracle} on chain {chain.chain_id}: check the "
                          f"address, or deploy an oracle there with `oracle deploy --config <this config> --chain "
                          f"{chain.name}`")
    expected = domain_separator(chain.chain_id, chain.oracle)
    try:
        raw = await patiently(functools.partial(rpc.eth_call, chain.oracle, _DOMAIN_SEPARATOR))
        found = bytes(decode(["bytes32"], raw)[0]) if len(raw) == 32 else None
    except RpcError:
        found = None
    if found != expected:
        raise ConfigError(f"{where}: the contract at {chain.oracle} is not an AIOracle this daemon can answer "
                          f"(its domainSeparator() is {('0x' + found.hex()) if found else 'missing'}, expected "
                          f"0x{expected.hex()}): check the address")
    raw = await patiently(functools.partial(rpc.eth_call, chain.oracle, _PAYEE_OF + encode(["address"], [signer])))
    if int.from_bytes(raw[:32] or b"\0", "big") == 0:
        raise ConfigError(f"chains[{chain.name}]: the signer {signer} is not registered on oracle {chain.oracle}, "
                          f"which would refuse every response it signs: the oracle's owner registers it with "
                          f"`oracle admin --config <this config> --chain {chain.name} set-signer {signer} "
                          f"<payee: the address paid the fees>`")
