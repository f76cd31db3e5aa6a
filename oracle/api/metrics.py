"""`GET /metrics`: the daemon in the Prometheus text format (prometheus-client, a registry of its own).

Two kinds of figures. Counted as they happen, since the process started (Prometheus handles restarts):
model calls by deployment and outcome, their latency and cost, and each request's stage latencies
(seconds from first seen to answered, submitted and fulfilled), the last read from the store's request
history by row id at each scrape, so no state write can be missed and a scrape reads only what is new.
Read at each scrape: requests by chain and state, heads, cursors and lag, halts and pauses, RPC errors
and reconnects, gas spent today against the daily budget, breaker states, x402 payments by provider and
state, and what is left of each x402 budget. Balances are read from the chains at most every
`BALANCE_SECONDS`, so a scrape every second costs the nodes nothing.

Labels are bounded: chains, states, deployments, providers and assets come from the config or the state
tables, never a requester's or payer's address."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from oracle.api.control import ChainLive, Control
from oracle.api.gateway import ROUTES as GATEWAY_ROUTES
from oracle.chain.rpc import RpcError, RpcUnavailable
from oracle.config import Config
from oracle.store import RequestState, Store
from oracle.store.states import PaymentState, SalePayment

log = logging.getLogger(__name__)

BALANCE_SECONDS = 15.0
STAGES = (RequestState.ANSWERED, RequestState.SUBMITTED, RequestState.FULFILLED)
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_800.0, 3_600.0)
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BREAKER_STATES = ("closed", "open", "half_open")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_HISTORY_PAGE = 10_000


class Metrics:
    def __init__(self, control: Control, store: Store, config: Config) -> None:
        self.control = control
        self.store = store  # a reader of the daemon's store
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_calls = Counter("oracle_model_calls", "Model calls finished, by deployment and outcome "
                                   "(ok, truncated, refused, filtered, malformed, error)",
                                   ["deployment", "outcome"], registry=self.registry)
        self.model_call_seconds = Histogram("oracle_model_call_seconds", "Model call latency by deployment",
                                            ["deployment"], buckets=CALL_BUCKETS, registry=self.registry)
        self.model_cost = Counter("oracle_model_cost_micro_usd", "What model calls cost, micro-USD (x402 payments "
                                  "included at their price)", ["deployment"], registry=self.registry)
        self.stage_seconds = Histogram("oracle_request_stage_seconds", "Seconds from a request's first sighting "
                                       "to each stage it reaches (answered, submitted, fulfilled)",
                                       ["chain", "stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.registry.register(_Live(self))
        self._names = {c.chain_id: c.name for c in config.chains}
        self._history_id = store.queries.last_history_id()  # counted from now, like the call counters
        self._balances_at = 0.0
        self.signer_balances: dict[int, int] = {}
        self.wallet_balances: dict[int, dict[str, int]] = {}

    def observe_call(self, deployment: str, outcome: str, seconds: float, cost: int) -> None:
        """The router's hook: one finished model call."""
        self.model_calls.labels(deployment, outcome).inc()
        self.model_call_seconds.labels(deployment).observe(seconds)
        if cost > 0:
            self.model_cost.labels(deployment).inc(cost)

    async def scrape(self) -> bytes:
        """The exposition, read now."""
        self._follow_history()
        if time.monotonic() - self._balances_at >= BALANCE_SECONDS:
            await self._read_balances()
        return generate_latest(self.registry)

    def _follow_history(self) -> None:
        while True:
            rows = self.store.queries.stages_after(self._history_id, STAGES, _HISTORY_PAGE)
            for r in rows:
                self.stage_seconds.labels(self._names.get(r.chain_id, str(r.chain_id)), r.state).observe(r.seconds)
                self._history_id = r.history_id
            if len(rows) < _HISTORY_PAGE:
                return

    async def _read_balances(self) -> None:
        self._balances_at = time.monotonic()
        for chain in self.control.chains():
            try:
                self.signer_balances[chain.chain_id] = await self.control.signer_balance(chain.chain_id)
                self.wallet_balances[chain.chain_id] = await self.control.wallet_balances(chain.chain_id)
            except (RpcError, RpcUnavailable) as exc:  # the last figures stand; rpc errors count it
                log.debug("chain %s: balances not read for the metrics: %s", chain.name, exc)


class _Live(Collector):
    """The figures read at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # read at collection: nothing to check up front

    def collect(self) -> Iterator[Metric]:
        m, store = self.m, self.m.store
        chains = m.control.chains()
        today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        settings = {c.chain_id: c for c in m.config.chains}

        requests = GaugeMetricFamily("oracle_requests", "Requests on record by chain and state",
                                     labels=["chain", "state"])
        for c in chains:
            counts = store.requests.count_by_state(c.chain_id)
            for state in RequestState:
                requests.add_metric([c.name, state.value], counts.get(state.value, 0))
        yield requests

        def per_chain(name: str, text: str, value: Callable[[ChainLive], float | None],
                      kind: type[GaugeMetricFamily] | type[CounterMetricFamily] = GaugeMetricFamily) -> Metric:
            family = kind(name, text, labels=["chain"])
            for c in chains:
                v = value(c)
                if v is not None:
                    family.add_metric([c.name], v)
            return family

        yield per_chain("oracle_head_block", "Newest block the intake has seen", lambda c: c.head)
        yield per_chain("oracle_cursor_block", "Last block the intake has read through", lambda c: c.cursor)
        yield per_chain("oracle_head_lag_blocks", "Blocks between the head and the intake's cursor",
                        lambda c: max(0, c.head - c.cursor) if c.cursor is not None else None)
        yield per_chain("oracle_chain_halted", "1 while the chain takes no new work until a restart (a reorg "
                        "deeper than max_reorg_depth)", lambda c: int(bool(c.halted)))
        yield per_chain("oracle_intake_paused", "1 while the operator has paused the chain's intake",
                        lambda c: int(bool(c.intake_paused)))
        yield per_chain("oracle_sending_paused", "1 while sending is held (low signer balance, gas budget spent)",
                        lambda c: int(bool(c.sending_paused)))
        yield per_chain("oracle_rpc_errors", "JSON-RPC calls the node did not answer", lambda c: c.rpc_errors,
                        CounterMetricFamily)
        yield per_chain("oracle_rpc_reconnects", "Times the WebSocket log subscription was opened again",
                        lambda c: c.ws_reconnects, CounterMetricFamily)
        yield per_chain("oracle_gas_spent_today_wei", "Gas paid today (UTC) by mined fulfilment transactions, wei",
                        lambda c: store.txs.gas_spent(c.chain_id, today))
        yield per_chain("oracle_gas_daily_budget_wei", "Most wei spent on gas per UTC day",
                        lambda c: settings[c.chain_id].gas.daily_budget if c.chain_id in settings else None)
        yield per_chain("oracle_signer_balance_wei", "Fulfilment signer's balance, wei",
                        lambda c: m.signer_balances.get(c.chain_id))
        yield per_chain("oracle_signer_low_balance_wei", "Below this signer balance no new work is taken, wei",
                        lambda c: c.low_balance)

        wallet = GaugeMetricFamily("oracle_payment_wallet_balance", "x402 payment wallet's balance of an asset, "
                                   "base units", labels=["chain", "asset"])
        for c in chains:
            for asset, amount in sorted(m.wallet_balances.get(c.chain_id, {}).items()):
                wallet.add_metric([c.name, asset], amount)
        yield wallet

        breakers = GaugeMetricFamily("oracle_breaker_state", "1 for each deployment's breaker's state",
                                     labels=["deployment", "state"])
        for deployment, breaker in sorted(m.control.breakers().items()):
            for each in BREAKER_STATES:
                breakers.add_metric([deployment, each], int(breaker == each))
        yield breakers

        yield from _x402(m.config, store)
        if m.config.gateway is not None:
            yield from _sales(store)


def _sales(store: Store) -> Iterator[Metric]:
    """What agents bought from the gateway, by route and sale state (a released call is not kept)."""
    sales = GaugeMetricFamily("oracle_gateway_sales", "Paid gateway calls on record by route and state",
                              labels=["route", "state"])
    amounts = GaugeMetricFamily("oracle_gateway_sales_amount", "What paid gateway calls were sold for, by route "
                                "and state, base units", labels=["route", "state"])
    found = store.queries.sales_by_state()
    for route in GATEWAY_ROUTES:
        for state in SalePayment:
            n, amount = found.get((route, state.value), (0, 0))
            sales.add_metric([route, state.value], n)
            amounts.add_metric([route, state.value], amount)
    yield sales
    yield amounts


def _x402(config: Config, store: Store) -> Iterator[Metric]:
    payments = GaugeMetricFamily("oracle_x402_payments", "x402 payments on record by provider and state",
                                 labels=["provider", "state"])
    counts = store.queries.payments_by_state()
    providers = sorted({m.provider for m in config.models if m.payer == "x402"} | {p for p, _ in counts})
    for provider in providers:
        for state in PaymentState:
            payments.add_metric([provider, state.value], counts.get((provider, state.value), 0))
    yield payments
    x402 = config.x402
    if x402 is None:
        return
    unresolved = GaugeMetricFamily("oracle_x402_unresolved_limit", "Most payments signed and not yet settled or "
                                   "expired (x402.max_unresolved)")
    unresolved.add_metric([], x402.max_unresolved)
    yield unresolved
    budget = x402.budget
    scopes = {("total", ""): ("total", budget.total)}
    for provider in providers:
        scopes[("per_provider", provider)] = (f"provider:{provider}", budget.per_provider)
    spent = store.queries.budget_spent(time.time() - budget.window, [scope for scope, _ in scopes.values()])
    left = GaugeMetricFamily("oracle_x402_budget_left", "What is left of an x402 budget over its rolling window, "
                             "base units", labels=["budget", "provider"])
    limit = GaugeMetricFamily("oracle_x402_budget_limit", "An x402 budget over its rolling window, base units",
                              labels=["budget", "provider"])
    for (kind, provider), (scope, amount) in scopes.items():
        left.add_metric([kind, provider], max(0, amount - spent.get(scope, 0)))
        limit.add_metric([kind, provider], amount)
    yield left
    yield limit
