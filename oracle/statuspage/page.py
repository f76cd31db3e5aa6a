"""The status page as one self-contained HTML document: inline CSS, inline SVG, no script, no outside
asset; it reloads itself. Pure: `render(data)` only formats. Every value from the chain, a provider or
the config is escaped (a prompt's model spec or a refusal's detail is data, never markup), and every
number sits in an element with a stable `data-metric` name, inside rows with stable ids."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping

from oracle.statuspage.charts import bar_chart
from oracle.statuspage.data import RecentRequest, StatusPageData
from oracle.statuspage.units import coin, count, usd
from oracle.views.records import ChainStatus, DeploymentRecord

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2430;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#5b6472;font-size:13px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0001}
th,td{padding:5px 10px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:13px;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px ui-monospace,monospace}
.ok{color:#1f7a36}.failing,.open,.failure,.bad{color:#b3261e;font-weight:600}.unused,.none{color:#7a828e}
.half-open,.pending{color:#a66a00}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts figure{margin:0;background:#fff;padding:8px;box-shadow:0 1px 2px #0001}
figcaption{font-weight:600;font-size:13px;margin-bottom:4px}
svg .axis{stroke:#8a929e}svg .grid{stroke:#e3e6ea}
svg .label{font:11px system-ui,sans-serif;fill:#5b6472}svg .empty{font:14px system-ui,sans-serif;fill:#7a828e}
.detail{max-width:28em;overflow-wrap:anywhere;color:#5b6472}
"""


_BLANK = "\N{EN DASH}"  # a value not known
# states a request can rest in with no answer sent (yet): the outcome shown is the state itself
_ENDED_UNANSWERED = ("refused", "expired", "unprofitable")


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def token(value: str) -> str:
    """A piece of an id or class: letters, digits, `-`, `_`, `.` and `:` kept, anything else as `_`."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", value)


def num(metric: str, text: str) -> str:
    """A table cell holding one number, named for scripts and tests."""
    return f'<td class="n" data-metric="{e(metric)}">{e(text)}</td>'


def render(data: StatusPageData) -> str:
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{data.refresh_seconds}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Oracle status</title><style>{_CSS}</style></head><body>",
        "<h1>Oracle status</h1>",
        f'<p class="meta">at <time data-metric="generated_at">{e(data.generated_at)}</time> · reloads every '
        f'{data.refresh_seconds} s · times in UTC</p>',
        _chains(data.chains), _states(data.chains), _spend(data.chains), _wallets(data.chains),
        '<h2>Last hours</h2><div class="charts">',
        *(f"<figure><figcaption>{e(c.title)}</figcaption>{bar_chart(c)}</figure>" for c in (data.latency, data.spend)),
        "</div>",
        _providers(data.deployments, data.breakers), _recent(data.recent),
        "</body></html>"])


def _table(section: str, heads: Iterable[tuple[str, bool]], rows: list[str], empty: str) -> str:
    head = "".join(f'<th class="n">{e(h)}</th>' if numeric else f"<th>{e(h)}</th>" for h, numeric in heads)
    body = "".join(rows) if rows else f'<tr><td colspan="99" class="none">{e(empty)}</td></tr>'
    return f'<table id="{e(section)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _when(at: str | None) -> str:
    """A record's ISO time as a person reads it: `2026-12-01 11:39:30`."""
    return at[:19].replace("T", " ") if at else _BLANK


def _opt(value: int | None) -> str:
    return _BLANK if value is None else count(value)


def _chains(chains: list[ChainStatus]) -> str:
    rows = []
    for c in chains:
        m = f"chain:{c.chain_id}"
        error = (f'<span class="bad">{e(c.chain_error)}</span>' if c.chain_error
                 else '<span class="ok">answering</span>' if c.head is not None
                 else '<span class="none">not read</span>')
        rows.append(f'<tr id="chain-{c.chain_id}"><td>{e(c.name)}</td>{num(m + ":chain_id", str(c.chain_id))}'
                    f'<td><code>{e(c.oracle or "not deployed")}</code></td>'
                    f'{num(m + ":head", _opt(c.head))}{num(m + ":cursor", _opt(c.cursor))}'
                    f'{num(m + ":lag", _opt(c.lag))}{num(m + ":pending", count(c.pending))}'
                    f'{num(m + ":failures_today", count(c.failures_today))}<td>{error}</td></tr>')
    heads = [("chain", False), ("id", True), ("oracle", False), ("head", True), ("cursor", True),
             ("lag (blocks)", True), ("pending", True), ("failures today", True), ("node", False)]
    return "<h2>Chains</h2>" + _table("chains", heads, rows, "no chain in the config")


def _states(chains: list[ChainStatus]) -> str:
    states = sorted({s for c in chains for s in c.requests_by_state})
    rows = [f'<tr id="states-{c.chain_id}"><td>{e(c.name)}</td>'
            + "".join(num(f"chain:{c.chain_id}:state:{s}", count(c.requests_by_state.get(s, 0))) for s in states)
            + num(f"chain:{c.chain_id}:requests", count(sum(c.requests_by_state.values()))) + "</tr>"
            for c in chains]
    heads = [("chain", False), *((s, True) for s in states), ("all", True)]
    return "<h2>Requests by state</h2>" + _table("states", heads, rows if states else [], "no request on record yet")


def _units(metric: str, amounts: dict[str, str]) -> str:
    """Token amounts per asset: base units, and the asset's address shortened (in full when hovered)."""
    return "<br>".join(f'<span data-metric="{e(metric)}:{e(asset)}">{e(count(int(units)))}</span> '
                       f'<span class="none">of <code title="{e(asset)}">{e(_short(asset))}</code></span>'
                       for asset, units in amounts.items()) or _BLANK


def _short(address: str) -> str:
    return f"{address[:6]}\N{HORIZONTAL ELLIPSIS}{address[-4:]}" if len(address) > 12 else address


def _spend(chains: list[ChainStatus]) -> str:
    rows = []
    for c in chains:
        m = f"chain:{c.chain_id}"
        rows.append(f'<tr id="spend-{c.chain_id}"><td>{e(c.name)}</td>'
                    f'{num(m + ":gas_spent_today", coin(c.gas_spent_today_wei))}'
                    f'{num(m + ":gas_left_today", coin(c.gas_left_today_wei))}'
                    f'{num(m + ":gas_daily_budget", coin(c.gas_daily_budget_wei))}'
                    f'{num(m + ":models_today", usd(c.model_spend_today_micro_usd))}'
                    f'<td class="n">{_units(m + ":x402_today", c.x402_spend_today)}</td></tr>')
    heads = [("chain", False), ("gas today", True), ("gas left today", True), ("daily gas budget", True),
             ("models today", True), ("x402 paid today (base units)", True)]
    return ("<h2>Spend today</h2>" + _table("spend", heads, rows, "no chain in the config")
            + '<p class="meta">gas in the native coin (1e18 wei); model spend includes what was paid over x402</p>')


def _wallets(chains: list[ChainStatus]) -> str:
    rows = []
    for c in chains:
        m = f"chain:{c.chain_id}"
        signer = coin(c.signer_balance_wei) if c.signer_balance_wei is not None else _BLANK
        rows.append(f'<tr id="wallets-{c.chain_id}"><td>{e(c.name)}</td><td><code>{e(c.signer or _BLANK)}</code></td>'
                    f'{num(m + ":signer_balance", signer)}<td><code>{e(c.payment_wallet or _BLANK)}</code></td>'
                    f'<td class="n">{_units(m + ":wallet_balance", c.payment_wallet_balances)}</td></tr>')
    heads = [("chain", False), ("fulfilment signer", False), ("its balance (native coin)", True),
             ("payment wallet", False), ("its balance (base units)", True)]
    return "<h2>Wallets</h2>" + _table("wallets", heads, rows, "no chain in the config")


def _providers(deployments: list[DeploymentRecord], breakers: Mapping[str, str] | None) -> str:
    rows = []
    for d in deployments:
        m = f"deployment:{token(d.id)}"
        breaker = ""
        if breakers is not None:
            state = breakers.get(d.id, "closed")
            breaker = f'<td class="{e(token(state))}" data-metric="{e(m)}:breaker">{e(state)}</td>'
        rows.append(f'<tr id="deployment-{e(token(d.id))}"><td><code>{e(d.id)}</code></td><td>{e(d.provider)}</td>'
                    f'<td><code>{e(d.model)}</code></td><td>{e(d.payer)}</td>'
                    f'<td class="{e(token(d.health))}" data-metric="{e(m)}:health">{e(d.health)}</td>{breaker}'
                    f'{num(m + ":calls", count(d.calls))}{num(m + ":failures", count(d.failures))}'
                    f'{num(m + ":p50_ms", f"{d.p50_ms:.1f}")}<td class="n">{e(_when(d.last_call_at))}</td>'
                    f'<td class="detail">{e(d.last_error)}</td></tr>')
    heads = [("deployment", False), ("provider", False), ("model", False), ("payer", False), ("health", False),
             *([("breaker", False)] if breakers is not None else []), ("recent calls", True), ("failed", True),
             ("p50 ms", True), ("last call", False), ("last error", False)]
    return ("<h2>Providers</h2>" + _table("providers", heads, rows, "no deployment in the config")
            + '<p class="meta">health from each deployment\'s latest calls on record'
            + ("; breaker: the daemon's live circuit breaker" if breakers is not None else "") + "</p>")


def _recent(recent: list[RecentRequest]) -> str:
    rows = []
    for r in recent:
        s = r.summary
        m = f"request:{s.chain_id}:{s.request_id}"
        outcome = s.status if s.status != "none" else s.state if s.state in _ENDED_UNANSWERED else "pending"
        why = s.reason if s.reason != "none" else ""
        rows.append(f'<tr id="request-{s.chain_id}-{e(s.request_id)}"><td class="n">{e(_when(s.seen_at))}</td>'
                    f'{num(m + ":chain_id", str(s.chain_id))}<td><code title="{e(s.request_id)}">'
                    f'{e(s.request_id[:18])}…</code></td><td data-metric="{e(m)}:state">{e(s.state)}</td>'
                    f'<td class="{e(token(outcome))}" data-metric="{e(m)}:outcome">{e(outcome)}'
                    f'{" · " + e(why) if why else ""}</td><td><code>{e(r.model_spec)}</code></td>'
                    f'<td><code>{e(r.deployment or _BLANK)}</code></td>{num(m + ":fee", coin(s.fee_wei))}'
                    f'<td class="detail">{e(r.detail)}</td></tr>')
    heads = [("seen", False), ("chain", True), ("request", False), ("state", False), ("outcome", False),
             ("model asked", False), ("answered by", False), ("fee", True), ("detail", False)]
    return "<h2>Recent requests</h2>" + _table("recent", heads, rows, "no request on record yet")
