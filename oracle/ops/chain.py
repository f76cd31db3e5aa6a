"""The node of the chain an operator's command works on, checked to answer and serve the configured chain."""

from __future__ import annotations

import aiohttp

from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings, ConfigError


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
