"""The chain an operator's command works on: found by name in the config, and its node checked."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings, Config, ConfigError


def chain_named(config: Config, name: str, config_path: Path) -> tuple[int, ChainSettings]:
    """The chain called `name` and its place in the config's list."""
    for index, chain in enumerate(config.chains):
        if chain.name == name:
            return index, chain
    raise ConfigError(f"no chain named {name!r} in {config_path}; its chains are: "
                      + ", ".join(repr(c.name) for c in config.chains))


async def connect(session: aiohttp.ClientSession, chain: ChainSettings) -> ChainClient:
    """A client of the chain's node, once it answers and serves the configured chain id."""
    rpc = ChainClient(session, chain.rpc_url, timeout=chain.rpc_timeout)
    try:
        actual = await rpc.chain_id()
    except (RpcError, RpcUnavailable) as exc:
        raise ConfigError(f"chains[{chain.name}]: the node at {chain.rpc_url} does not answer ({exc}): is it up, "
                          "and is rpc_url right?") from None
    if actual != chain.chain_id:
        raise ConfigError(f"chains[{chain.name}].chain_id is {chain.chain_id} but {chain.rpc_url} serves chain "
                          f"{actual}")
    return rpc
