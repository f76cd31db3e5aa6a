"""Everything the status page shows, gathered from the read side (`oracle.views`) and the store in one
pass: each chain's status, the newest requests with their outcome, the catalog with its health, and the
hourly series the charts draw."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from oracle.config import Config
from oracle.statuspage.charts import Chart, HourBar
from oracle.store import Store
from oracle.store.queries import HourLatency, HourSpend
from oracle.views import (
    ChainReads,
    ChainStatus,
    DeploymentRecord,
    RequestFilter,
    RequestSummary,
    catalog,
    chain_status,
    list_requests,
    read_chains,
    request_detail,
    wallets,
)
from oracle.views.records import iso

REFRESH_SECONDS = 10
CHART_HOURS = 12
RECENT_REQUESTS = 15


@dataclass(frozen=True)
class RecentRequest:
    summary: RequestSummary
    model_spec: str  # as the request asked (untrusted text from the chain)
    deployment: str  # the deployment of its last model call, "" if none was made
    detail: str  # why it was refused or failed


@dataclass(frozen=True)
class StatusPageData:
    generated_at: str  # UTC ISO-8601
    refresh_seconds: int
    chains: list[ChainStatus]
    recent: list[RecentRequest]
    deployments: list[DeploymentRecord]
    latency: Chart
    spend: Chart
    # deployment id -> the daemon's live circuit breaker state; None when the page is rendered without
    # the daemon's memory (the catalog's health, from the calls on record, is shown either way)
    breakers: Mapping[str, str] | None = field(default=None)


async def gather(store: Store, config: Config, reads: Sequence[ChainReads | None] | None = None,
                 breakers: Mapping[str, str] | None = None, now: float | None = None) -> StatusPageData:
    """The page's data. `reads` are the chains' heads and balances (`oracle.views.read_chains`); when not
    given they are read here, one request per value to each chain's node."""
    now = time.time() if now is None else now
    who = [wallets(store, config, chain) for chain in config.chains]
    if reads is None:
        reads = await read_chains(config, config.chains, who)
    statuses = [chain_status(store, config, chain, w, r, now)
                for chain, w, r in zip(config.chains, who, reads, strict=True)]
    models = {d.id: d.model for d in config.models}
    recent = []
    for summary in list_requests(store, RequestFilter(), limit=RECENT_REQUESTS).items:
        detail = request_detail(store, summary.key, models)
        recent.append(RecentRequest(summary, detail.model_spec,
                                    detail.attempts[-1].deployment if detail.attempts else "", detail.detail))
    first_hour = (int(now) // 3_600 - CHART_HOURS + 1) * 3_600
    hours = [first_hour + 3_600 * i for i in range(CHART_HOURS)]
    latency = [store.queries.latency_by_hour(c.chain_id, first_hour) for c in config.chains]
    spend = [(c.native_price_micro_usd, store.queries.spend_by_hour(c.chain_id, first_hour)) for c in config.chains]
    return StatusPageData(
        generated_at=iso(now) or "", refresh_seconds=REFRESH_SECONDS, chains=statuses, recent=recent,
        deployments=catalog(store, config), latency=latency_chart(hours, latency),
        spend=spend_chart(hours, spend),
        breakers=dict(breakers) if breakers is not None else None)


def latency_chart(hours: list[int], per_chain: Sequence[Sequence[HourLatency]]) -> Chart:
    """Mean seconds from seen to fulfilled per hour, over every chain (weighted by requests)."""
    bars = []
    for hour in hours:
        rows = [r for chain in per_chain for r in chain if r.hour == hour]
        n = sum(r.fulfilled for r in rows)
        mean = sum(r.mean_s * r.fulfilled for r in rows) / n if n else 0.0
        most = max((r.max_s for r in rows), default=0.0)
        bars.append(HourBar(hour, (round(mean, 3),),
                            f"{n} fulfilled, mean {mean:.1f} s, slowest {most:.1f} s" if n else "none fulfilled"))
    return Chart("latency", "Fulfilment latency (seen to fulfilled, mean per hour)", "s", ("mean",), bars)


def spend_chart(hours: list[int], per_chain: Sequence[tuple[int, Sequence[HourSpend]]]) -> Chart:
    """Dollars spent per hour over every chain: gas at each chain's configured native price, and model
    calls (x402 payments included)."""
    bars = []
    for hour in hours:
        gas = sum(r.gas_wei * price // 10**18 for price, rows in per_chain for r in rows if r.hour == hour)
        models = sum(r.models_micro_usd for _, rows in per_chain for r in rows if r.hour == hour)
        bars.append(HourBar(hour, (gas / 1e6, models / 1e6),
                            f"gas ${gas / 1e6:.6f}, models ${models / 1e6:.6f}"))
    return Chart("spend", "Spend per hour (gas at the configured native price, and models)", "$",
                 ("gas", "models"), bars)
