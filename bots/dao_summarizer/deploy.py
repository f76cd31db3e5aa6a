"""`deploy`: a GovernanceSummarizer for one configured Governor (its Governor is fixed at construction, so
each Governor gets its own), from the artifacts shipped with the package, its address written into the
Governor's table in the config (`summarizer = "0x..."`, comments kept).

Run again, it deploys nothing while the configured summarizer is a GovernanceSummarizer bound to that
Governor. The config is checked writable before anything is sent, so an address is never left unsaved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from bots.dao_summarizer.config import SummarizerConfig
from bots.dao_summarizer.proposals import check, watched
from oracle.abi import artifact
from oracle.client import ClientError, send_call
from oracle.config import ConfigError
from oracle.ops.config_file import AddressSlot, check_writable, write_address

Say = Callable[[str], None]


def _slot(config: SummarizerConfig, name: str) -> AddressSlot:
    index = next((i for i, g in enumerate(config.governors) if g.name == name), None)
    if index is None:
        raise ConfigError(f"no governor named {name!r} in the config: use one of "
                          f"{', '.join(g.name for g in config.governors)}")
    return AddressSlot("governors", index, "summarizer", ("name", "governor"))


async def deploy(config: SummarizerConfig, path: Path, name: str, key: bytes, say: Say = print) -> str:
    settings = config.governor(name)
    slot = _slot(config, name)
    assert settings is not None
    w3 = AsyncWeb3(AsyncHTTPProvider(config.chain.rpc_url))
    try:
        if settings.summarizer is not None and await w3.eth.get_code(to_checksum_address(settings.summarizer)):
            await check(w3, [watched(w3, settings)])  # refuses one bound to another Governor
            say(f"{name}: summarizer {settings.summarizer} is in place for Governor {settings.governor}: nothing to do")
            return settings.summarizer
        if not await w3.eth.get_code(to_checksum_address(settings.governor)):
            raise ClientError(f"governors ({name}).governor: no contract at {settings.governor}: is the address right?")
        check_writable(path, slot)
        d = settings.deploy
        art = artifact("GovernanceSummarizer")
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = await send_call(w3, factory.constructor(
            config.chain.oracle, settings.governor, d.model_spec, d.callback_gas_limit, d.max_tokens,
            d.max_result_bytes, d.deadline_window, d.max_prompt_bytes), key, what="deploying the GovernanceSummarizer")
        address = str(receipt["contractAddress"])
        write_address(path, slot, address)
        say(f"{name}: GovernanceSummarizer deployed at {address} for Governor {settings.governor} (model "
            f"{d.model_spec!r}, {d.max_tokens} tokens, callback gas {d.callback_gas_limit}); written to {path}")
        return address
    finally:
        await w3.provider.disconnect()
