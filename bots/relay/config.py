"""The relay's config file (TOML), checked at start-up: one chain and oracle to follow, the store, and
the endpoints results are pushed to, each with its filter.

    [chain]
    rpc_url = "http://127.0.0.1:8545"
    oracle = "0x..."

    [store]
    path = "relay.sqlite"

    [[endpoints]]
    name = "alerts"
    url = "https://hooks.example/oracle"
    secret_env = "RELAY_ALERTS_SECRET"

Every bad setting is refused in one line naming the setting and what to change
(`endpoints[0] (alerts).url: ...`). Secrets are never in the file: each endpoint names the environment
variable that holds its `whsec_...` secret, read by `bots.relay.signing.load_keys`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bots.settings import ChainSettings, ConfigPath, Strict, env_name, load, parse, url
from oracle.client import ResultFilter
from oracle.config import Address
from oracle.protocol import ResultType

EventKind = Literal["settled", "retracted"]
EVENT_KINDS: tuple[EventKind, ...] = ("settled", "retracted")
RESULT_TYPES = tuple(t.name.lower() for t in ResultType)


class StoreSettings(Strict):
    path: ConfigPath = Path("relay.sqlite")


class EndpointFilter(Strict):
    """Which results go to an endpoint; an empty list lets every value through."""

    consumers: list[Address] = Field(default_factory=list)
    requesters: list[Address] = Field(default_factory=list)
    result_types: list[str] = Field(default_factory=list)
    events: list[EventKind] = Field(default_factory=lambda: list(EVENT_KINDS))

    @field_validator("result_types")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        for value in values:
            if value.lower() not in RESULT_TYPES:
                raise ValueError(f"unknown result type {value!r}: use some of {', '.join(RESULT_TYPES)}")
        return [v.lower() for v in values]

    def result_filter(self) -> ResultFilter:
        return ResultFilter(consumers=frozenset(self.consumers), requesters=frozenset(self.requesters),
                            result_types=frozenset(ResultType[t.upper()] for t in self.result_types))


class EndpointSettings(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="letters, digits, _ . -")
    url: str
    secret_env: str = Field(description="the environment variable holding the endpoint's whsec_... secret")
    timeout: float = Field(10.0, gt=0, le=60, description="seconds for one delivery attempt")
    max_retry_hours: float = Field(24.0, gt=0, le=24 * 30, description="how long a failing message is retried")
    filter: EndpointFilter = EndpointFilter()

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return url(value, ("http", "https"))

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return env_name(value, "secret")


class RelayConfig(Strict):
    chain: ChainSettings
    store: StoreSettings = StoreSettings()
    endpoints: list[EndpointSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RelayConfig:
        seen: set[str] = set()
        for endpoint in self.endpoints:
            if endpoint.name in seen:
                raise ValueError(f"endpoints: two are named {endpoint.name!r}: give each a name of its own")
            seen.add(endpoint.name)
        return self

    def endpoint(self, name: str) -> EndpointSettings | None:
        return next((e for e in self.endpoints if e.name == name), None)


def parse_config(data: dict[str, Any], source: str = "config") -> RelayConfig:
    return parse(RelayConfig, data, source)


def load_config(path: Path) -> RelayConfig:
    return load(RelayConfig, path)
