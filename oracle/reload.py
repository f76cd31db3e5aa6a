"""What a re-read config file changes in a running daemon (SIGHUP).

The catalog (deployments and their prices), the router's settings and the x402 payment limits and budgets
are taken for new requests at once. Everything else (the store, the keys, the chains, the pipeline, the
x402 wallet and networks) is built into running tasks and connections: a change there is reported and
kept as it was until a restart.

    plan = plan_reload(running, load_config(path))
    plan.config       # the config to run with now: the live parts new, the rest as running
    plan.live         # e.g. ["models", "router"]
    plan.restart      # e.g. ["chains[base].confirmations"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oracle.config import Config, ConfigError, X402Settings, parse_config

# Top-level sections taken live, and the x402 fields taken live (the rest of [x402] needs a restart).
LIVE_SECTIONS = ("models", "router")
LIVE_X402 = ("budget", "max_payment", "max_validity_seconds", "max_unresolved")


@dataclass(frozen=True)
class ReloadPlan:
    config: Config
    live: list[str]
    restart: list[str]


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    old_doc, new_doc = _dump(running), _dump(new)
    live = [name for name in LIVE_SECTIONS if getattr(running, name) != getattr(new, name)]
    restart = [path for name in Config.model_fields if name not in (*LIVE_SECTIONS, "x402")
               for path in _differences(name, old_doc.get(name), new_doc.get(name))]
    x402 = running.x402
    if (running.x402 is None) != (new.x402 is None):
        restart.append("x402")
    elif running.x402 is not None and new.x402 is not None:
        taken = {f: getattr(new.x402, f) for f in LIVE_X402 if getattr(running.x402, f) != getattr(new.x402, f)}
        live += [f"x402.{f}" for f in taken]
        kept = [f for f in X402Settings.model_fields if f not in LIVE_X402]
        restart += [path for f in kept
                    for path in _differences(f"x402.{f}", old_doc["x402"].get(f), new_doc["x402"].get(f))]
        x402 = running.x402.model_copy(update=taken)
    config = running.model_copy(update={**{name: getattr(new, name) for name in LIVE_SECTIONS}, "x402": x402})
    try:  # the new catalog with the settings kept (a deployment paid on a network the wallet does not pay on)
        parse_config(config.model_dump(by_alias=True, exclude_none=True))
    except ConfigError as exc:
        raise ConfigError(f"with the settings that need a restart kept as they run: {exc}") from None
    return ReloadPlan(config, live, restart)


def _dump(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json", by_alias=True)


def _differences(path: str, old: Any, new: Any) -> list[str]:
    """Where two dumped settings differ, as config paths (`chains[base].confirmations`)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [p for key in sorted(set(old) | set(new))
                for p in _differences(f"{path}.{key}", old.get(key), new.get(key))]
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
            and all(isinstance(e, dict) for e in [*old, *new])):
        return [p for i, (a, b) in enumerate(zip(old, new, strict=True))
                for p in _differences(f"{path}[{a.get('name', a.get('id', i))}]", a, b)]
    return [path]
