"""What every bot that follows the oracle opens first: its client cursor (in the bot's own SQLite store)
and the client, the cursor checked against the chain and the oracle it was made for."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bots.settings import ChainSettings
from oracle.client import CursorMismatch, OracleClient, SqliteCursor
from oracle.config import ConfigError


async def open_following(held: contextlib.AsyncExitStack, chain: ChainSettings,
                         store: Path) -> tuple[OracleClient, SqliteCursor]:
    """The client and the store's cursor, each closed when `held` closes; a store made for another chain
    or oracle is a ConfigError naming it."""
    cursor = SqliteCursor(store)
    held.callback(cursor.close)
    client = await OracleClient.connect(chain.rpc_url, ws_url=chain.ws_url, oracle=chain.oracle)
    held.push_async_callback(client.close)
    try:
        cursor.load(client.chain_id, chain.oracle)
    except CursorMismatch as exc:
        raise ConfigError(f"store {store}: {exc}") from None
    return client, cursor
