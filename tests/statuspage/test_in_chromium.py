"""The status page of a real daemon on the local stack (a free request, one paid over x402, one refused
and answered with a failure), served at `GET /` by the daemon's own operator listener and loaded in
headless Chromium: every number read from the rendered DOM by its data-metric equals what the same
listener's API answers (`/v1/status`, `/v1/requests`, `/v1/catalog`), and, where the chain holds it, the
chain. The screenshot is checked in the test's own folder; with SCREENSHOT_TO set (the README's image:
`SCREENSHOT_TO=bench/results/status-page.png`) it is copied there too."""

from __future__ import annotations

import asyncio
import datetime
import os
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from oracle.config import load_config
from oracle.statuspage.charts import hour_key
from tests.browser import dump_dom, screenshot
from tests.commands.test_inspection_commands import Inspected, inspected
from tests.statuspage.dom import micro_usd, page_metrics, wei, whole

__all__ = ["inspected"]  # the module-scoped daemon run this file reads

SCREENSHOT_TO = "SCREENSHOT_TO"


@dataclass
class Loaded:
    served: str  # the HTML as the server sent it
    dom: str  # as Chromium parsed it
    content_type: str
    status: dict[str, Any]  # the API's answers, read right after from the same listener
    details: list[dict[str, Any]]
    catalog: list[dict[str, Any]]
    native_price_micro_usd: int


async def _load(run: Inspected, shot: Path | None) -> Loaded:
    base = run.daemon.api_url()
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/") as reply:
            assert reply.status == 200
            served, content_type = await reply.text(), reply.headers["Content-Type"]
        dom = await asyncio.to_thread(dump_dom, base + "/")
        if shot is not None:
            await asyncio.to_thread(screenshot, base + "/", shot)

        async def api(path: str) -> Any:
            async with session.get(base + path) as got:
                assert got.status == 200, await got.text()
                return await got.json()

        (live,) = await api("/v1/status")
        status = live["status"]
        details = [await api(f"/v1/requests/{r['chain_id']}/{r['request_id']}")
                   for r in (await api("/v1/requests?limit=50"))["items"]]
        entries = await api("/v1/catalog")
    price = load_config(run.config_path).chains[0].native_price_micro_usd
    return Loaded(served, dom, content_type, status, details, entries, price)


def test_the_page_in_chromium_shows_the_records_numbers(inspected: Inspected, tmp_path: Path) -> None:
    shot = tmp_path / "status-page.png"
    _check(inspected, asyncio.run(_load(inspected, shot)))
    # the screenshot: a PNG of the window's size with something drawn in it
    data = shot.read_bytes()
    if os.environ.get(SCREENSHOT_TO):
        Path(os.environ[SCREENSHOT_TO]).write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert struct.unpack(">II", data[16:24]) == (1280, 1600)


def _check(run: Inspected, loaded: Loaded) -> None:
    stack, s = run.stack, loaded.status
    assert loaded.content_type == "text/html; charset=utf-8"
    assert '<meta http-equiv="refresh" content="10">' in loaded.served
    metrics, ids = page_metrics(loaded.dom)
    assert page_metrics(loaded.served)[0].keys() == metrics.keys()  # Chromium parsed what was sent, whole
    c = f"chain:{stack.chain_id}"
    assert f"chain-{stack.chain_id}" in ids

    # intake: as the records say, and the head as the chain says (nothing is mined once the run settles)
    assert s["head"] == stack.w3.eth.block_number and s["chain_error"] is None
    assert (whole(metrics[f"{c}:head"]), whole(metrics[f"{c}:cursor"]), whole(metrics[f"{c}:lag"])) == \
        (s["head"], s["cursor"], s["lag"])
    assert whole(metrics[f"{c}:pending"]) == s["pending"] == 0
    assert whole(metrics[f"{c}:failures_today"]) == s["failures_today"] == 1  # the refused one
    by_state = {k.rsplit(":", 1)[1]: whole(v) for k, v in metrics.items() if k.startswith(f"{c}:state:")}
    assert by_state == s["requests_by_state"] == {"fulfilled": 3}

    # spend today and balances
    assert wei(metrics[f"{c}:gas_spent_today"]) == int(s["gas_spent_today_wei"]) > 0
    assert wei(metrics[f"{c}:gas_left_today"]) == int(s["gas_left_today_wei"])
    assert wei(metrics[f"{c}:gas_daily_budget"]) == int(s["gas_daily_budget_wei"])
    assert micro_usd(metrics[f"{c}:models_today"]) == s["model_spend_today_micro_usd"] > 0
    usd_asset = stack.addresses["TestUSD"]
    assert whole(metrics[f"{c}:x402_today:{usd_asset}"]) == int(s["x402_spend_today"][usd_asset]) == 2_500
    assert wei(metrics[f"{c}:signer_balance"]) == stack.w3.eth.get_balance(stack.keys.signer.address)
    held = stack.contract("TestUSD").functions.balanceOf(stack.keys.payment_wallet.address).call()
    assert whole(metrics[f"{c}:wallet_balance:{usd_asset}"]) == held

    # providers: the catalog's health from the calls on record
    assert len(loaded.catalog) == 2
    for entry in loaded.catalog:
        d = entry["deployment"]
        assert f"deployment-{d['id']}" in ids
        assert metrics[f"deployment:{d['id']}:health"] == d["health"] == "ok"
        assert whole(metrics[f"deployment:{d['id']}:calls"]) == d["calls"] == 1
        assert whole(metrics[f"deployment:{d['id']}:failures"]) == d["failures"]
        assert float(metrics[f"deployment:{d['id']}:p50_ms"]) == d["p50_ms"]
        assert metrics[f"deployment:{d['id']}:breaker"] == entry["breaker"] == "closed"  # the daemon's live one

    # recent requests, each with its outcome
    assert len(loaded.details) == 3
    for detail in loaded.details:
        r = detail["request"]
        m = f"request:{r['chain_id']}:{r['request_id']}"
        assert f"request-{r['chain_id']}-{r['request_id']}" in ids
        assert metrics[f"{m}:state"] == r["state"] == "fulfilled"
        assert wei(metrics[f"{m}:fee"]) == int(r["fee_wei"])
        shown = metrics[f"{m}:outcome"]
        if r["request_id"] == "0x" + run.refused.hex():
            assert shown == "failure · unknown_model" and detail["detail"] in loaded.dom
        else:
            assert shown == "success"

    # the charts: per hour, the mean time from seen to fulfilled, and the spend, as the records give them
    latency: dict[str, list[float]] = defaultdict(list)
    for detail in loaded.details:
        seen = _time(detail["request"]["seen_at"])
        done = min(_time(h["at"]) for h in detail["history"] if h["state"] == "fulfilled")
        latency[hour_key(int(done) // 3600 * 3600)].append(done - seen)
    drawn = {k.removeprefix("chart:latency:mean:"): float(v)
             for k, v in metrics.items() if k.startswith("chart:latency:mean:") and float(v)}
    assert drawn.keys() == latency.keys()
    for hour, values in latency.items():
        assert abs(drawn[hour] - sum(values) / len(values)) < 0.002  # the records keep milliseconds
    price = loaded.native_price_micro_usd
    gas_by_hour: dict[int, int] = defaultdict(int)
    for tx in {t["tx_hash"]: t for d in loaded.details for t in d["transactions"]}.values():
        gas_by_hour[int(_time(tx["sent_at"])) // 3600] += int(tx["gas_cost_wei"] or 0)
    gas_drawn = sum(float(v) for k, v in metrics.items() if k.startswith("chart:spend:gas:"))
    models_drawn = sum(float(v) for k, v in metrics.items() if k.startswith("chart:spend:models:"))
    assert abs(gas_drawn - sum(w * price // 10**18 for w in gas_by_hour.values()) / 1e6) < 1e-9
    assert abs(models_drawn - sum(a["cost_micro_usd"] for d in loaded.details for a in d["attempts"]) / 1e6) < 1e-9
    assert models_drawn > 0 and gas_drawn > 0 and "no data yet" not in loaded.dom


def _time(iso: str | None) -> float:
    assert iso is not None
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
