"""The trading agent's config file (TOML), checked at start-up: the chain and oracle, the agent's key,
store, schedule and bounds, and the assets it trades, each with its RiskSentinel and vault.

    [chain]
    rpc_url = "http://127.0.0.1:8545"
    oracle = "0x..."

    [agent]
    key_env = "TRADING_AGENT_KEY"
    position_wei = "1000000000000000000"

    [[assets]]
    name = "ETH"
    sentinel = "0x..."
    vault = "0x..."
    context = "ETH market: ..."

Every bad setting is refused in one line naming the setting and what to change
(`assets[0] (ETH).context: ...`). What only the chain can say (the sentinel's owner and pause
threshold) is checked once connected (`bots.trading_agent.sentinel`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from bots.settings import ChainSettings, ConfigPath, Strict, env_name, load
from oracle.config import Address, ConfigError


class AgentSettings(Strict):
    key_env: str = Field(description="the environment variable holding the key that owns the sentinels")
    store: ConfigPath = Path("trading_agent.sqlite")
    interval: float = Field(60.0, ge=1, le=86_400, description="seconds between risk checks")
    max_score_age: float = Field(600.0, ge=1, description="seconds: an older score is ignored")
    reduce_above: int = Field(50, ge=0, le=100)
    close_above: int = Field(70, ge=0, le=100)
    reopen_below: int = Field(30, ge=0, le=100)
    position_wei: int = Field(gt=0, description="the full position per asset, in wei")

    @field_validator("key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return env_name(value, "key")

    @field_validator("position_wei", mode="before")
    @classmethod
    def _wei(cls, value: Any) -> Any:
        # TOML integers stop at 2^63, so a position in wei may be written as a string of digits
        if isinstance(value, str):
            if not value.isdigit():
                raise ValueError(f"must be a whole number of wei, as digits (\"1000000000000000000\"), not {value!r}")
            return int(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> AgentSettings:
        if not self.reopen_below < self.reduce_above < self.close_above:
            raise ValueError(f"bounds must be ordered reopen_below < reduce_above < close_above, not "
                             f"{self.reopen_below}, {self.reduce_above}, {self.close_above}: change them so each "
                             f"is above the one before")
        return self


class AssetSettings(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="letters, digits, _ . -")
    sentinel: Address
    vault: Address
    context: str | None = Field(None, min_length=1, description="the text the risk score is asked about")
    context_file: ConfigPath | None = Field(None, description="a file holding the context, read at every check")

    @model_validator(mode="after")
    def _one_context(self) -> AssetSettings:
        if (self.context is None) == (self.context_file is None):
            raise ValueError("give exactly one of context (the text) or context_file (a file read at every check)")
        return self

    def read_context(self) -> bytes:
        """The text to ask about now; ConfigError when the file cannot be read or is empty."""
        if self.context is not None:
            return self.context.encode()
        assert self.context_file is not None
        try:
            text = self.context_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"context_file {self.context_file}: {exc.strerror}: write the context there or give "
                              f"its right path") from None
        if not text.strip():
            raise ConfigError(f"context_file {self.context_file} is empty: write the context there")
        return text


class TradingConfig(Strict):
    chain: ChainSettings
    agent: AgentSettings
    assets: list[AssetSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> TradingConfig:
        for field in ("name", "sentinel", "vault"):  # one position per vault: two assets would fight over it
            seen: set[str] = set()
            for asset in self.assets:
                value = str(getattr(asset, field))
                if value.lower() in seen:
                    raise ValueError(f"assets: two have {field} {value!r}: give each asset its own")
                seen.add(value.lower())
        return self

    def asset_of(self, sentinel: str) -> AssetSettings | None:
        return next((a for a in self.assets if a.sentinel.lower() == sentinel.lower()), None)


def load_config(path: Path) -> TradingConfig:
    return load(TradingConfig, path)
