"""The operator listener: what only the operator should see and do (loopback by default).

    GET  /                     the status page (HTML, refreshes itself)
    GET  /health               the process runs
    GET  /ready                each readiness check, 200 or 503
    GET  /metrics              Prometheus text format
    GET  /v1/status            each chain: head, cursor, lag, requests by state, spend today, balances
    GET  /v1/requests          ?chain=&state=&since=&limit=&cursor=, newest first
    GET  /v1/requests/{chain_id}/{request_id}
    GET  /v1/payments          ?state=&limit=&cursor=
    GET  /v1/catalog           deployments with prices, capabilities, health and live breaker state
    POST /v1/chains/{chain}/pause | /resume        (bearer token)
    POST /v1/requests/{chain_id}/{request_id}/retry (bearer token)
    POST /v1/reconcile                              (bearer token)
    GET  /openapi.json
"""

from __future__ import annotations

import time

from aiohttp import web

from oracle.api.control import ActionRefused, ChainLive, Control
from oracle.api.http import MAX_BODY, bearer, json_body, json_errors, loopback_only, query, reply
from oracle.api.metrics import CONTENT_TYPE, Metrics
from oracle.api.openapi import operator_document
from oracle.api.ready import readiness
from oracle.api.records import CatalogEntry, LiveChainStatus
from oracle.config import ChainSettings, Config
from oracle.statuspage.serve import status_page_handler
from oracle.store import Store, request_key
from oracle.views import (
    BadQuery,
    NotFound,
    RequestFilter,
    catalog,
    chain_status,
    list_payments,
    list_requests,
    parse_limit,
    parse_since,
    parse_states,
    read_chains,
    request_detail,
    wallets,
)
from oracle.views.parse import parse_request_id

MAX_REASON = 200
RETRY_NOTE = ("queued to be sent: it goes out only if its fee covers the gas at the price when it is sent; "
              "otherwise it is unprofitable again (its history shows each try)")


def operator_app(control: Control, store: Store, config: Config, metrics: Metrics,
                 token: str | None) -> web.Application:
    """`store` is a reader of the daemon's store; `token` guards the mutating routes (None: they are off)."""
    loopback = config.api.operator.host in ("127.0.0.1", "localhost", "::1") or \
        config.api.operator.host.startswith("127.")
    app = web.Application(middlewares=[json_errors("operator"), *([loopback_only()] if loopback else [])],
                          client_max_size=MAX_BODY)
    started = time.time()
    guard = bearer(token, config.api.token_env)
    document = operator_document()

    def chain_by_id(text: str) -> ChainSettings:
        for c in config.chains:
            if text.strip().lower() in (str(c.chain_id), c.name.lower()):
                return c
        raise NotFound(f"no chain {text!r} here: the chains are "
                       + ", ".join(f"{c.name} ({c.chain_id})" for c in config.chains))

    def key_of(request: web.Request) -> str:
        chain = chain_by_id(request.match_info["chain_id"])
        text = request.match_info["request_id"]
        if ":" in text:
            raise BadQuery(f"not a request id: {text[:100]!r}: the path takes the chain and the request id apart, "
                           f"/v1/requests/CHAIN/REQUEST_ID (64 hex digits, 0x optional)")
        return request_key(chain.chain_id, chain.require_oracle(), parse_request_id(text))

    async def health(request: web.Request) -> web.Response:
        query(request)
        return reply({"status": "ok", "uptime_seconds": round(time.time() - started, 3)})

    async def ready(request: web.Request) -> web.Response:
        query(request)
        checks = await readiness(control, config.api.ready_max_lag)
        ok = all(c.ok for c in checks)
        return reply({"ready": ok, "failed": [c.name for c in checks if not c.ok], "checks": checks},
                     200 if ok else 503)

    async def scrape(request: web.Request) -> web.Response:
        query(request)
        return web.Response(body=await metrics.scrape(), headers={"Content-Type": CONTENT_TYPE,
                                                                  "Cache-Control": "no-store"})

    async def status(request: web.Request) -> web.Response:
        query(request)
        who = [wallets(store, config, c) for c in config.chains]
        reads = await read_chains(config, config.chains, who)
        now = time.time()
        live = {c.chain_id: c for c in control.chains()}
        return reply([LiveChainStatus(chain_status(store, config, c, w, r, now), *_live(live.get(c.chain_id)))
                      for c, w, r in zip(config.chains, who, reads, strict=True)])

    async def requests(request: web.Request) -> web.Response:
        q = query(request, "chain", "state", "since", "limit", "cursor")
        chain = chain_by_id(q["chain"]).chain_id if q.get("chain") else None
        where = RequestFilter(chain, parse_states(q.get("state")), parse_since(q.get("since")))
        return reply(list_requests(store, where, parse_limit(q.get("limit")), q.get("cursor") or None))

    async def one_request(request: web.Request) -> web.Response:
        query(request)
        return reply(request_detail(store, key_of(request), {d.id: d.model for d in config.models}))

    async def payments(request: web.Request) -> web.Response:
        q = query(request, "state", "limit", "cursor")
        return reply(list_payments(store, parse_states(q.get("state"), "payment"), parse_limit(q.get("limit")),
                                   q.get("cursor") or None))

    async def models(request: web.Request) -> web.Response:
        query(request)
        live = control.breakers()
        return reply([CatalogEntry(d, live.get(d.id, "")) for d in catalog(store, config)])

    async def pause(request: web.Request) -> web.Response:
        chain = chain_by_id(request.match_info["chain"])
        reason = (await json_body(request, "reason")).get("reason", "paused by the operator")
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON or not reason.isprintable():
            raise BadQuery(f"reason: a string of one line, 1 to {MAX_REASON} printable characters")
        control.pause_intake(chain.chain_id, reason)
        return reply(_chain_intake(control, chain))

    async def resume(request: web.Request) -> web.Response:
        chain = chain_by_id(request.match_info["chain"])
        await json_body(request)
        control.resume_intake(chain.chain_id)
        return reply(_chain_intake(control, chain))

    async def retry(request: web.Request) -> web.Response:
        key = key_of(request)
        await json_body(request)
        return reply({"key": key, "state": control.retry(key), "note": RETRY_NOTE})

    async def reconcile(request: web.Request) -> web.Response:
        await json_body(request)
        return reply(await control.reconcile())

    async def openapi(_: web.Request) -> web.Response:
        return reply(document)

    app.router.add_get("/", status_page_handler(store, config, control.breakers))
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/requests", requests)
    app.router.add_get("/v1/requests/{chain_id}/{request_id}", one_request)
    app.router.add_get("/v1/payments", payments)
    app.router.add_get("/v1/catalog", models)
    app.router.add_post("/v1/chains/{chain}/pause", guard(pause))
    app.router.add_post("/v1/chains/{chain}/resume", guard(resume))
    app.router.add_post("/v1/requests/{chain_id}/{request_id}/retry", guard(retry))
    app.router.add_post("/v1/reconcile", guard(reconcile))
    app.router.add_get("/openapi.json", openapi)
    return app


def _live(chain: ChainLive | None) -> tuple[str | None, str | None, str | None]:
    if chain is None:
        return None, None, None
    return chain.intake_paused or None, chain.sending_paused or None, chain.halted or None


def _chain_intake(control: Control, chain: ChainSettings) -> dict[str, object]:
    live = next((c for c in control.chains() if c.chain_id == chain.chain_id), None)
    if live is None:
        raise ActionRefused(f"chain {chain.name} is not running in this daemon")
    return {"chain": chain.name, "chain_id": chain.chain_id, "intake_paused": live.intake_paused or None}
