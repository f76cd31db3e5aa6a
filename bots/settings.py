"""What every bot's TOML config shares: strict tables (an unknown key is refused), the `[chain]` table
(the node and the oracle to follow), URL and environment-variable checks, and one parser that turns
pydantic's errors into one line naming each setting and what to change
(`endpoints[0] (alerts).url: ...`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from oracle.config import Address, ConfigError, read_toml

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _from_config_dir(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("config_dir")
    return value if value.is_absolute() or base is None else Path(base) / value


# A file a config names: a relative path is from the config file's folder, not from wherever the bot was
# started, so a restart from another directory finds the same store.
ConfigPath = Annotated[Path, AfterValidator(_from_config_dir)]


def url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be a URL starting {' or '.join(s + '://' for s in schemes)} with a host, not {value!r}")
    return value


def env_name(value: str, holds: str) -> str:
    if re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", value):  # the secret itself: never echoed back
        raise ValueError(f"this holds what looks like a {holds} itself: put the {holds} in an environment variable "
                         f"and name the variable here (letters, digits, _)")
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name: name the variable that holds the "
                         f"{holds} (letters, digits, _), not the {holds} itself")
    return value


class ChainSettings(Strict):
    rpc_url: str
    ws_url: str | None = None
    oracle: Address
    confirmations: int = Field(1, ge=0, le=1_000, description="blocks deep before a result is used")
    from_block: int | None = Field(None, ge=0, description="default: the head when the bot first starts")

    @field_validator("rpc_url")
    @classmethod
    def _rpc(cls, value: str) -> str:
        return url(value, ("http", "https"))

    @field_validator("ws_url")
    @classmethod
    def _ws(cls, value: str | None) -> str | None:
        return None if value is None else url(value, ("ws", "wss"))


def _where(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`endpoints[1] (alerts).url`: the path to a setting, with the name of the list entry it is in."""
    out = ""
    node: Any = data
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            node = None
    return out or "config"


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting: remove it or check its spelling"
    if error["type"] == "missing":
        return "missing: add it"
    return str(error["msg"]).removeprefix("Value error, ")


def parse(model: type[Model], data: dict[str, Any], source: str = "config", config_dir: Path | None = None) -> Model:
    """`data` checked as `model` (relative paths from `config_dir`); ConfigError with one line per problem
    otherwise."""
    try:
        return model.model_validate(data, context={"config_dir": config_dir})
    except ValidationError as exc:
        problems = [f"{_where(e['loc'], data)}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load(model: type[Model], path: Path) -> Model:
    return parse(model, read_toml(path), f"config {path}", path.resolve().parent)
