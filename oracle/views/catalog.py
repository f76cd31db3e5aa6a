"""The catalog the config gives, with each deployment's prices and capabilities, and its health as the
store knows it (its latest calls: the daemon's breakers live in its memory, the calls are on record)."""

from __future__ import annotations

from oracle.config import Config
from oracle.store import Store
from oracle.store.queries import DeploymentCalls
from oracle.views.records import DeploymentRecord, iso


def catalog(store: Store, config: Config) -> list[DeploymentRecord]:
    calls = {c.deployment: c for c in store.queries.deployment_calls(config.router.health_window)}
    out = []
    for d in config.models:
        c = calls.get(d.id)
        health = "unused" if c is None else "failing" if _failing(c, config) else "ok"
        out.append(DeploymentRecord(
            id=d.id, provider=d.provider, api=d.api, model=d.model, payer=d.payer, input_price=d.input_price,
            cached_input_price=d.cached_input_price, output_price=d.output_price, call_price=d.call_price,
            context_window=d.context_window, max_output=d.max_output, capabilities=[str(x) for x in d.capabilities],
            data_policy=str(d.data_policy), quality=d.quality, health=health, calls=c.calls if c else 0,
            failures=c.failures if c else 0, p50_ms=round(c.p50_ms, 1) if c else 0.0,
            last_call_at=iso(c.last_at) if c else None, last_outcome=c.last_outcome if c else "",
            last_error=c.last_error if c else ""))
    return out


def _failing(c: DeploymentCalls, config: Config) -> bool:
    """As the router's breaker judges a deployment (enough calls, and that share of them failed), or every
    call on record failed."""
    share = c.failures * 100 >= c.calls * config.router.breaker_failure_percent
    return (share and c.calls >= config.router.breaker_min_calls) or c.failures == c.calls
