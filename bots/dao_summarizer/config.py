"""The summarizer's config file (TOML), checked at start-up.

    [chain]
    rpc_url = "http://127.0.0.1:8545"
    oracle = "0x..."

    [bot]
    key_env = "DAO_SUMMARIZER_KEY"       # the variable holding the key that pays for summaries
    store = "dao_summarizer.sqlite"

    [http]
    port = 8090                           # the feed and its page; 0 picks a free port

    [[governors]]
    name = "local"
    governor = "0x..."
    summarizer = "0x..."                  # its GovernanceSummarizer; `deploy` writes it here

Every bad setting is refused in one line naming the setting and what to change.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from bots.settings import ChainSettings, ConfigPath, Strict, env_name, load
from oracle.config import Address


class BotSettings(Strict):
    key_env: str = "DAO_SUMMARIZER_KEY"
    store: ConfigPath = Path("dao_summarizer.sqlite")
    feed_file: ConfigPath | None = Field(None, description="also write the feed here as JSON after each change")
    scan_interval: float = Field(12.0, gt=0, le=3_600, description="seconds between looks for new proposals")
    retry_interval: float = Field(60.0, gt=0, le=86_400, description="seconds between looks for failed summaries")
    retry_fee_factor: float = Field(2.0, ge=1, le=100, description="the one re-ask pays this many times the quote")
    digest_time: datetime.time = Field(datetime.time(9, 0), description="when (UTC) the daily digest is made")

    @field_validator("key_env")
    @classmethod
    def _key_env(cls, value: str) -> str:
        return env_name(value, "key")


class HttpSettings(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65_535, description="0 picks a free port, logged at start")


class DeploySettings(Strict):
    """What `deploy` gives a new GovernanceSummarizer (fixed at construction)."""

    model_spec: str = "best"
    callback_gas_limit: int = Field(2_000_000, ge=50_000, le=10_000_000)
    max_tokens: int = Field(1_024, ge=16, le=100_000)
    max_result_bytes: int = Field(2_048, ge=64, le=100_000)
    deadline_window: int = Field(3_600, ge=60, le=30 * 86_400, description="seconds a request may wait")
    max_prompt_bytes: int = Field(6_144, ge=512, le=1_000_000, description="a longer proposal is cut to this, so "
                                  "it fits the context window of the models the spec picks")


class GovernorSettings(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="letters, digits, _ . -")
    governor: Address
    summarizer: Address | None = Field(None, description="unset until `deploy` writes it")
    from_block: int | None = Field(None, ge=0, description="default: the head when the bot first starts")
    deploy: DeploySettings = DeploySettings()


class SummarizerConfig(Strict):
    chain: ChainSettings
    bot: BotSettings = BotSettings()
    http: HttpSettings = HttpSettings()
    governors: list[GovernorSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SummarizerConfig:
        names = [g.name for g in self.governors]
        twice = {n for n in names if names.count(n) > 1}
        if twice:
            raise ValueError(f"governors: more than one is named {', '.join(sorted(twice))}: give each its own name")
        return self

    def governor(self, name: str) -> GovernorSettings | None:
        return next((g for g in self.governors if g.name == name), None)


def load_config(path: Path) -> SummarizerConfig:
    return load(SummarizerConfig, path)
