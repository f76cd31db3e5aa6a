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

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oracle.client import ResultFilter
from oracle.config import Address, ConfigError, read_toml
from oracle.protocol import ResultType

EventKind = Literal["settled", "retracted"]
RESULT_TYPES = tuple(t.name.lower() for t in ResultType)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be a URL starting {' or '.join(s + '://' for s in schemes)} with a host, not {value!r}")
    return value


class ChainSettings(_Strict):
    rpc_url: str
    ws_url: str | None = None
    oracle: Address
    confirmations: int = Field(1, ge=0, le=1_000, description="blocks deep before a result is pushed")
    from_block: int | None = Field(None, ge=0, description="default: the head when the relay first starts")

    @field_validator("rpc_url")
    @classmethod
    def _rpc(cls, value: str) -> str:
        return _url(value, ("http", "https"))

    @field_validator("ws_url")
    @classmethod
    def _ws(cls, value: str | None) -> str | None:
        return None if value is None else _url(value, ("ws", "wss"))


class StoreSettings(_Strict):
    path: Path = Path("relay.sqlite")


class EndpointFilter(_Strict):
    """Which results go to an endpoint; an empty list lets every value through."""

    consumers: list[Address] = []
    requesters: list[Address] = []
    result_types: list[str] = []
    events: list[EventKind] = ["settled", "retracted"]

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


class EndpointSettings(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="letters, digits, _ . -")
    url: str
    secret_env: str = Field(description="the environment variable holding the endpoint's whsec_... secret")
    timeout: float = Field(10.0, gt=0, le=60, description="seconds for one delivery attempt")
    max_retry_hours: float = Field(24.0, gt=0, le=24 * 30, description="how long a failing message is retried")
    filter: EndpointFilter = EndpointFilter()

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return _url(value, ("http", "https"))

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name: name the variable that holds the "
                             f"secret (letters, digits, _), not the secret itself")
        return value


class RelayConfig(_Strict):
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


def _where(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`endpoints[1] (alerts).url`: the path to a setting, with the name of the endpoint it is in."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        if isinstance(part, int) and loc[0] == "endpoints" and out == f"endpoints[{part}]":
            entries = data.get("endpoints")
            if isinstance(entries, list) and part < len(entries) and isinstance(entries[part], dict) \
                    and isinstance(entries[part].get("name"), str):
                out += f" ({entries[part]['name']})"
    return out or "config"


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting: remove it or check its spelling"
    if error["type"] == "missing":
        return "missing: add it"
    return str(error["msg"]).removeprefix("Value error, ")


def parse_config(data: dict[str, Any], source: str = "config") -> RelayConfig:
    try:
        return RelayConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_where(e['loc'], data)}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: Path) -> RelayConfig:
    return parse_config(read_toml(path), f"config {path}")
