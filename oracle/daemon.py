"""The daemon: per chain a watcher, a pipeline and a transaction manager, on one aiohttp session and
one store, until told to stop.

Reloading (SIGHUP, `reload()`) re-reads the config file: the catalog, the router's settings and the
x402 limits and budgets apply to new requests at once; a change that needs a restart is reported and
kept as it was; a file that does not pass the config's checks is refused and the running config stays.

Stopping (SIGTERM/SIGINT) takes no new work, lets requests in flight finish the step they are in
(bounded by `shutdown_grace`), commits, and returns; whatever was not finished resumes from the store
on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from oracle.api import ActionRefused, ApiServer, ChainLive
from oracle.api.gateway import Gateway
from oracle.chain.clock import ChainClock
from oracle.chain.fee_schedule import fee_shortfalls, patiently, smallest_response_gas
from oracle.chain.oracle_check import check_oracle
from oracle.chain.rpc import ChainClient, LogSubscription, RpcError, RpcUnavailable
from oracle.chain.signer import ResponseSigner
from oracle.chain.tx import TxManager
from oracle.chain.watcher import TOPICS, RequestWatcher
from oracle.config import ChainSettings, Config, ConfigError, load_config
from oracle.pipeline import Pipeline
from oracle.reload import plan_reload
from oracle.router import Catalog, ModelRouter
from oracle.store import Requests, RequestState, Store, StoreLock
from oracle.views import NotFound
from oracle.x402 import PayingClient, PaymentWallet
from oracle.x402.gate import PaymentGate
from oracle.x402.network import PaymentNetworks
from oracle.x402.reconciler import Reconciler

log = logging.getLogger(__name__)


@dataclass
class ChainRuntime:
    settings: ChainSettings
    rpc: ChainClient
    watcher: RequestWatcher
    txm: TxManager
    pipeline: Pipeline


class Daemon:
    def __init__(self, config: Config, shutdown_grace: float = 10.0, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path  # re-read by reload()
        self.shutdown_grace = shutdown_grace
        self.runtimes: list[ChainRuntime] = []
        self.ready = asyncio.Event()
        self._router: ModelRouter | None = None
        self._paying: PayingClient | None = None
        self._reconciler: Reconciler | None = None
        self._store: Store | None = None
        self._gate: PaymentGate | None = None
        self.api_urls: dict[str, str] = {}  # listener name -> base URL, once they listen

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        config.require_oracles()
        key = config.signer.load()
        catalog = Catalog(config.models)
        catalog.check_keys()
        _check_typed_results(config)
        wallet = PaymentWallet.load(config.x402.wallet, key) if config.x402 is not None else None
        lock = StoreLock(config.store.path).acquire()  # one daemon per store: a second one stops here
        try:
            store = Store.open(config.store.path)
        except BaseException:
            lock.release()
            raise
        self._store = store
        scheduler = AsyncIOScheduler()
        api: ApiServer | None = None
        gateway: Gateway | None = None
        try:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=128)
            async with aiohttp.ClientSession(connector=connector) as session:
                paying = None
                if config.x402 is not None and wallet is not None:
                    networks = PaymentNetworks(session, config.x402)
                    reconciler = self._reconciler = Reconciler(store.payments, config.x402, session,
                                                                networks=networks)
                    paying = PayingClient(session, wallet, config.x402, store.payments, resolve=reconciler.resolve,
                                          networks=networks)
                    scheduler.add_job(reconciler.run_once, "interval", seconds=config.x402.reconcile_interval)
                    log.info("paying over x402 from %s", wallet.address)
                router = ModelRouter(catalog, session, store.routing, config.router, paying=paying)
                self._router, self._paying = router, paying
                for chain in config.chains:
                    self.runtimes.append(await self._build(chain, session, store, router, key))
                for rt in self.runtimes:
                    scheduler.add_job(_log_stats, "interval", seconds=30, args=[rt, store.requests])
                scheduler.add_job(_log_health, "interval", seconds=60, args=[router])
                if config.gateway is not None:
                    gate = self._gate = PaymentGate(config.gateway, session, store.sales)
                    await gate.start()
                    scheduler.add_job(_forget_answers, "interval", seconds=60, args=[store])
                    gateway = Gateway(config.gateway, router, gate, store.sales,
                                      {c.chain_id: ResponseSigner(key, c.chain_id, c.require_oracle())
                                       for c in config.chains})
                if config.api.operator.enabled or config.api.public.enabled:
                    api = ApiServer(self, config, config.store.path, gateway)
                    await api.start()
                    router.on_call = api.metrics.observe_call
                    self.api_urls = api.urls
                scheduler.start()
                async with asyncio.TaskGroup() as tasks:
                    workers = []
                    for rt in self.runtimes:
                        workers += [tasks.create_task(rt.watcher.run()), tasks.create_task(rt.txm.run()),
                                    tasks.create_task(rt.pipeline.run())]
                    self.ready.set()
                    log.info("oracle running on %s", ", ".join(c.name for c in config.chains))
                    await stop.wait()
                    log.info("stopping: no new work; finishing what is in flight")
                    await self._drain()
                    for worker in workers:
                        worker.cancel()
        finally:
            if api is not None:
                with contextlib.suppress(Exception):
                    await api.stop()
            if self._gate is not None:
                with contextlib.suppress(Exception):
                    await self._gate.stop()
            with contextlib.suppress(Exception):
                scheduler.shutdown(wait=False)
            store.close()
            lock.release()
            log.info("stopped")

    def reload(self) -> bool:
        """Re-read the config file and apply what applies live; False (and the running config kept) when
        the file is refused. Every line it logs names what changed, never a value of a key."""
        router = self._router
        if self.config_path is None or router is None:
            log.warning("config reload: ignored (the daemon is still starting, or has no config file)")
            return False
        try:
            plan = plan_reload(self.config, load_config(self.config_path))
            catalog = Catalog(plan.config.models)
            if "models" in plan.live:
                catalog.check_keys()
                _check_typed_results(plan.config)
        except ConfigError as exc:
            log.error("config reload refused; the running config stays: %s", exc)
            return False
        for path in plan.restart:
            log.warning("config reload: %s changed; it needs a restart and is kept as it was until then", path,
                        extra={"fields": {"setting": path, "applied": False}})
        router.reload(catalog, plan.config.router)
        if self._paying is not None and plan.config.x402 is not None:
            self._paying.settings = plan.config.x402
        self.config = plan.config
        log.info("config reloaded from %s: %s applied to new requests; catalog %s", self.config_path,
                 ", ".join(plan.live) or "nothing live changed", catalog.version,
                 extra={"fields": {"applied": plan.live, "needs_restart": plan.restart,
                                   "catalog_version": catalog.version}})
        return True

    # ------------------------------------------------------------ what the API asks (oracle.api.Control)

    def chains(self) -> list[ChainLive]:
        store = self._store
        out = []
        for rt in self.runtimes:
            c = rt.settings
            found = store.blocks.cursor(c.chain_id, c.require_oracle()) if store is not None else None
            out.append(ChainLive(
                c.name, c.chain_id, rt.watcher.head, found[0] if found is not None else None,
                rt.watcher.halted or rt.txm.halted, rt.txm.paused_reason, rt.pipeline.intake_paused,
                rt.rpc.errors, rt.watcher.subscription.reconnects if rt.watcher.subscription is not None else 0,
                rt.txm.sender, c.gas.low_balance))
        return out

    async def node_answers(self, chain_id: int) -> str | None:
        try:
            await self._runtime(chain_id).rpc.block_number()
        except (RpcError, RpcUnavailable) as exc:
            return f"{exc}"
        return None

    async def signer_balance(self, chain_id: int) -> int:
        rt = self._runtime(chain_id)
        return await rt.rpc.balance(rt.txm.sender)

    async def wallet_balances(self, chain_id: int) -> dict[str, int]:
        if self._paying is None:
            return {}
        rt = self._runtime(chain_id)
        network = f"eip155:{chain_id}"
        assets = sorted({m.x402.asset for m in self.config.models if m.x402 is not None and m.x402.network == network})
        return {a: await rt.rpc.token_balance(a, self._paying.wallet.address) for a in assets}

    def store_writable(self) -> str | None:
        return self._store.writable() if self._store is not None else "the store is not open"

    def breakers(self) -> dict[str, str]:
        if self._router is None:
            return {}
        return {d: str(f["breaker"]) for d, f in self._router.health.report().items()}

    def pause_intake(self, chain_id: int, reason: str) -> None:
        rt = self._runtime(chain_id)
        rt.pipeline.pause_intake(reason)
        log.warning("chain %s: intake paused: %s", rt.settings.name, reason,
                    extra={"fields": {"chain": rt.settings.name, "reason": reason}})

    def resume_intake(self, chain_id: int) -> None:
        rt = self._runtime(chain_id)
        if rt.pipeline.intake_paused:
            rt.pipeline.resume_intake()
            log.warning("chain %s: intake resumed", rt.settings.name, extra={"fields": {"chain": rt.settings.name}})

    def retry(self, key: str) -> str:
        store = self._store
        if store is None:
            raise ActionRefused("the daemon is still starting: try again")
        row = store.requests.get(key)
        if row is None:
            raise NotFound(f"no request {key} on record in this store")
        if row.state != RequestState.UNPROFITABLE:
            raise ActionRefused(f"request {key} is {row.state}: only an unprofitable request can be retried (a request "
                                f"still being answered goes on by itself; one that ended otherwise is settled)")
        rt = self._runtime(row.chain_id)
        now, margin = rt.pipeline.clock(), self.config.pipeline.deadline_margin
        if row.deadline - margin <= now:
            raise ActionRefused(f"request {key}: its deadline {row.deadline} is past or within deadline_margin "
                                f"({margin:g} s) of the chain's time {now:.0f}; its requester can cancel it and "
                                f"take the fee back")
        if not store.requests.retry(key):
            raise ActionRefused(f"request {key} moved meanwhile: look at it again")
        log.info("request %s: retried by the operator; its fee is checked against the gas again", key,
                 extra={"fields": {"chain": rt.settings.name, "request": key}})
        rt.pipeline.wake()
        return str(RequestState.SIGNED)

    async def reconcile(self) -> dict[str, int]:
        if self._reconciler is None:
            raise ActionRefused("x402 is not configured in this daemon: there is nothing to reconcile")
        report = await self._reconciler.run_once()
        return {"settled": report.settled, "expired": report.expired, "pending": report.pending,
                "final": report.final, "reorganised": report.reorganised, "errors": report.errors,
                "flagged": len(report.flagged)}

    def _runtime(self, chain_id: int) -> ChainRuntime:
        for rt in self.runtimes:
            if rt.settings.chain_id == chain_id:
                return rt
        raise NotFound(f"chain {chain_id} is not running in this daemon")

    async def _build(self, chain: ChainSettings, session: aiohttp.ClientSession, store: Store,
                     router: ModelRouter, key: bytes) -> ChainRuntime:
        rpc = ChainClient(session, chain.rpc_url, timeout=chain.rpc_timeout, name=chain.name)
        rpc.outage.muted = True  # a node that fails the start-up checks is one line: the ConfigError below
        try:
            actual = await patiently(rpc.chain_id)
        except (RpcError, RpcUnavailable) as exc:
            raise ConfigError(f"chains[{chain.name}]: the node at {chain.rpc_url} does not answer ({exc}): is it up, "
                              f"and is rpc_url right?") from None
        if actual != chain.chain_id:
            raise ConfigError(f"chains[{chain.name}].chain_id is {chain.chain_id} but {chain.rpc_url} serves "
                              f"chain {actual}")
        clock = ChainClock()
        # The chain's time before anything acts on a deadline: a restart must not take the machine's
        # clock for the chain's (a chain ahead of it would have its expired requests answered).
        head = await patiently(lambda: rpc.header("latest"))
        if head is not None:
            clock.observe(head.timestamp)
        txm = TxManager(chain, rpc, store.requests, store.txs, key, clock=clock.now)
        await check_oracle(rpc, chain, txm.sender)
        await self._check_fees(rpc, chain, txm)
        rpc.outage.muted = False
        signer = ResponseSigner(key, chain.chain_id, chain.oracle)
        pipeline = Pipeline(chain, self.config.pipeline, store.requests, router, signer, txm, txm.current_max_fee,
                            clock=clock.now)
        subscription = (LogSubscription(session, chain.ws_url, chain.oracle, TOPICS, name=chain.name)
                        if chain.ws_url is not None else None)
        watcher = RequestWatcher(chain, rpc, store.requests, store.blocks, clock, subscription,
                                 on_new_work=pipeline.wake,
                                 on_reorg=txm.reorged, on_halt=txm.halt)
        return ChainRuntime(chain, rpc, watcher, txm, pipeline)

    @staticmethod
    async def _check_fees(rpc: ChainClient, chain: ChainSettings, txm: TxManager) -> None:
        """Refuse to serve an oracle whose fee schedule cannot pay for the smallest response."""
        try:
            price = await patiently(txm.price_now)
            shortfalls = await fee_shortfalls(rpc, chain, price)
        except (RpcError, RpcUnavailable) as exc:
            raise ConfigError(f"chains[{chain.name}]: could not read the fee schedule of oracle {chain.oracle} "
                              f"from {chain.rpc_url} ({exc}): is it the oracle's address, and is the node "
                              f"up?") from None
        if shortfalls:
            raise ConfigError(
                f"chains[{chain.name}]: the fee schedule of oracle {chain.oracle} cannot pay for its smallest "
                f"response ({smallest_response_gas(chain)} gas at {price} wei/gas): "
                + "; ".join(str(s) for s in shortfalls)
                + f". Raise those classes' base fee from the oracle's owner key (`oracle admin --config <this config> "
                  f"--chain {chain.name} set-fees CLASS --base-fee WEI`, or setFeeSchedule(policyClass, (baseFee, "
                  "perCallbackGas, perOutputToken))), then start again")

    async def _drain(self) -> None:
        for rt in self.runtimes:
            rt.pipeline.stop()
        try:
            async with asyncio.timeout(self.shutdown_grace):
                while any(rt.pipeline.in_flight for rt in self.runtimes):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("shutdown grace over with requests in flight; they resume on the next start")


def _check_typed_results(config: Config) -> None:
    """Every result type but text asks for structured output: a catalog without it would answer each such
    request on-chain with `Unsupported`, paying gas for every refusal."""
    if not any("json_schema" in m.capabilities for m in config.models):
        raise ConfigError("models: no deployment has the json_schema capability, so no bool, uint, int, choice, "
                          "json or abi request could be answered: add a deployment that supports structured "
                          "output and list \"json_schema\" in its capabilities")


def _log_stats(rt: ChainRuntime, requests: Requests) -> None:
    counts = requests.count_by_state(rt.settings.chain_id)
    log.info("chain %s: head %d, requests %s, txs sent %d rebuilt %d confirmed %d%s%s", rt.settings.name,
             rt.watcher.head, counts, rt.txm.sent, rt.txm.rebuilt, rt.txm.confirmed,
             f", PAUSED: {rt.txm.paused_reason}" if rt.txm.paused_reason else "",
             "".join(f", NOT READY: {why}" for why in (rt.watcher.halted, rt.txm.halted) if why))


def _log_health(router: ModelRouter) -> None:
    for deployment, figures in router.health.report().items():
        log.info("deployment %s: %s", deployment, " ".join(f"{k}={v}" for k, v in figures.items()))


async def _forget_answers(store: Store) -> None:
    """Answers kept for payment identifiers go ten minutes after their authorization's validBefore."""
    store.sales.forget_answers(time.time())
    await store.commit()
