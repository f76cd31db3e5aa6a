"""The status page from a real store file: what it shows of an empty store, untrusted text kept as
text (a refusal's detail, a model spec, a deployment id), the live breaker states when given, and
charts that draw the hours on record with their axis labels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from oracle.config import Config, parse_config
from oracle.devnet.harness import dev_model
from oracle.protocol import ReasonCode
from oracle.statuspage import gather, render, status_page_handler, status_page_html
from oracle.statuspage.charts import Chart, HourBar, bar_chart, nice_ceiling
from oracle.statuspage.data import CHART_HOURS, RecentRequest
from oracle.store import RequestState, Store
from oracle.views import RequestFilter, list_requests
from tests.statuspage.dom import page_metrics, wei, whole
from tests.store.conftest import ORACLE, a_request, put_in_state

HOSTILE = "<script>alert(\"x\")</script> ' & é 日本 \u202e"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "oracle.sqlite")
    yield s
    s.close()


def a_config(tmp_path: Path, model_id: str = "local") -> Config:
    return parse_config({
        "store": {"path": str(tmp_path / "oracle.sqlite")},
        "signer": {"key_env": "ORACLE_TEST_KEY_NOT_SET"},  # not loadable: the page reads no key
        "chains": [{"name": "local", "chain_id": 31337, "rpc_url": "http://127.0.0.1:9", "oracle": ORACLE,
                    "native_price_micro_usd": 3_000 * 10**6}],
        "models": [{**dev_model("http://127.0.0.1:9/v1"), "id": model_id}],
    })


def offline_page(store: Store, config: Config, **kw: object) -> str:
    """The page with no chain read (the chain's node is not asked)."""
    return render(asyncio.run(gather(store, config, reads=[None], **kw)))  # type: ignore[arg-type]


def test_an_empty_store_renders_every_section_with_no_data_yet(store: Store, tmp_path: Path) -> None:
    page = offline_page(store, a_config(tmp_path))
    assert page.startswith("<!DOCTYPE html>") and '<meta http-equiv="refresh" content="10">' in page
    assert page.count("no data yet") == 2  # both charts
    assert "no request on record yet" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page  # self-contained, no script
    metrics, ids = page_metrics(page)
    assert "chain-31337" in ids and "deployment-local" in ids
    assert metrics["chain:31337:head"] == "\N{EN DASH}" and metrics["chain:31337:cursor"] == "\N{EN DASH}"
    assert whole(metrics["chain:31337:pending"]) == 0
    assert metrics["deployment:local:health"] == "unused"
    assert "deployment:local:breaker" not in metrics


def test_a_chain_that_does_not_answer_says_why(store: Store, tmp_path: Path) -> None:
    page = asyncio.run(status_page_html(store, a_config(tmp_path)))  # reads the chain: nothing listens on :9
    assert "http://127.0.0.1:9" in page and "did not answer" in page
    assert page_metrics(page)[0]["chain:31337:head"] == "\N{EN DASH}"


def test_untrusted_text_is_shown_as_text(store: Store, tmp_path: Path) -> None:
    r = a_request(1)
    store.requests.insert(r)
    put_in_state(store, r.key, RequestState.REFUSED, reason=int(ReasonCode.UNKNOWN_MODEL), reason_detail=HOSTILE)
    store.commit_now()
    config = a_config(tmp_path, model_id='x"><script>alert(1)</script>')
    data = asyncio.run(gather(store, config, reads=[None], breakers={config.models[0].id: "<b>open</b>"}))
    recent = data.recent[0]
    data.recent[0] = RecentRequest(recent.summary, HOSTILE, HOSTILE, recent.detail)  # a model spec from the chain
    page = render(data)
    assert "<script" not in page and "<b>" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &#x27; &amp; é 日本 \u202e") == 3
    metrics, ids = page_metrics(page)
    (breaker,) = [v for k, v in metrics.items() if k.endswith(":breaker")]
    assert breaker == "<b>open</b>"  # shown as the text it is
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") for i in ids)


def test_rows_carry_the_records_numbers(store: Store, tmp_path: Path) -> None:
    for n, state in ((1, RequestState.FULFILLED), (2, RequestState.FULFILLED), (3, RequestState.SUBMITTED)):
        r = a_request(n)
        store.requests.insert(r)
        put_in_state(store, r.key, state)
    store.commit_now()
    data = asyncio.run(gather(store, a_config(tmp_path), reads=[None]))
    metrics, ids = page_metrics(render(data))
    (chain,) = data.chains
    assert {k.rsplit(":", 1)[1]: whole(v) for k, v in metrics.items() if ":state:" in k} == chain.requests_by_state
    assert whole(metrics["chain:31337:pending"]) == chain.pending == 1
    (summary,) = [s for s in list_requests(store, RequestFilter(), 10).items if s.state == "submitted"]
    assert f"request-31337-{summary.request_id}" in ids
    assert wei(metrics[f"request:31337:{summary.request_id}:fee"]) == int(summary.fee_wei)
    assert metrics[f"request:31337:{summary.request_id}:outcome"] == "pending"
    assert wei(metrics["chain:31337:gas_left_today"]) == int(chain.gas_left_today_wei)


def test_live_breaker_states_are_shown_when_given(store: Store, tmp_path: Path) -> None:
    metrics, _ = page_metrics(offline_page(store, a_config(tmp_path), breakers={"local": "open"}))
    assert metrics["deployment:local:breaker"] == "open"


def test_charts_draw_the_hours_on_record(store: Store, tmp_path: Path) -> None:
    now = time.time()
    r = a_request(1)
    store.requests.insert(r)
    store.db.write("UPDATE requests SET seen_at=?, updated_at=? WHERE key=?", (now - 7.0, now - 7.0, r.key))
    store.db.write("UPDATE requests SET state=?, updated_at=? WHERE key=?", (RequestState.FULFILLED, now - 3.0, r.key))
    store.commit_now()
    data = asyncio.run(gather(store, a_config(tmp_path), reads=[None], now=now))
    assert len(data.latency.bars) == CHART_HOURS and data.latency.bars[-1].values == (4.0,)
    assert not any(b.values[0] for b in data.latency.bars[:-1])
    page = render(data)
    assert page.count("no data yet") == 1  # the latency chart has its hour; nothing was spent
    metrics, _ = page_metrics(page)
    (bar,) = [v for k, v in metrics.items() if k.startswith("chart:latency:mean:") and float(v)]
    assert float(bar) == 4.0


def test_a_chart_labels_its_axes_and_escapes_its_text() -> None:
    hour = 1_764_584_400  # 2025-12-01T10:00Z
    chart = Chart("spend", "<i>spend</i>", "$", ("gas", "<models>"),
                  [HourBar(hour, (0.5, 1.7), "<b>note</b>"), HourBar(hour + 3_600, (0.0, 0.0), "")])
    svg = bar_chart(chart)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<i>" not in svg and "<b>" not in svg and "<models>" not in svg and "&lt;models&gt;" in svg
    assert all(f">${v}<" in svg for v in ("0", "0.5", "1", "1.5", "2", "2.5"))  # y axis: a round top above 2.2
    assert ">10:00<" in svg and ">11:00<" in svg and "hour (UTC)" in svg
    assert 'data-metric="chart:spend:gas:2025-12-01T10:00Z" data-value="0.5"' in svg
    assert "no data yet" not in svg
    assert "no data yet" in bar_chart(Chart("spend", "t", "$", ("gas",), [HourBar(hour, (0.0,), "")]))


def test_axis_tops_are_round() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 1.01, 2.2, 4, 7, 42)] == [1, 0.5, 1, 2, 2.5, 5, 10, 50]


def test_the_handler_reads_the_live_breakers_at_each_request(store: Store, tmp_path: Path) -> None:
    states = iter([{"local": "half-open"}, {"local": "open"}])

    async def fetch_twice() -> list[str]:
        app = web.Application()
        app.router.add_get("/", status_page_handler(store, a_config(tmp_path), lambda: next(states)))
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
            pages = []
            for _ in range(2):
                async with session.get(server.make_url("/")) as reply:
                    assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store"
                    assert reply.content_type == "text/html"
                    pages.append(await reply.text())
            return pages

    first, second = asyncio.run(fetch_twice())
    assert page_metrics(first)[0]["deployment:local:breaker"] == "half-open"
    assert page_metrics(second)[0]["deployment:local:breaker"] == "open"
