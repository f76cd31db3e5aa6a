"""The inspection commands: `oracle status`, `requests`, `request-info`, `models`, `payments`.

Each reads the store of a config (never locking it, never writing: they run beside `oracle run`) through
`oracle.views`, and prints a table, or with `--json` the records themselves for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from oracle.config import Config, ConfigError, load_config
from oracle.store import Store, StoreUnreadable
from oracle.views import (
    BadQuery,
    ChainReads,
    NotFound,
    RequestFilter,
    as_json,
    catalog,
    chain_status,
    list_payments,
    list_requests,
    parse_limit,
    parse_since,
    parse_states,
    read_chains,
    request_detail,
    resolve_request,
    wallets,
)
from oracle.views.paging import Page
from oracle.views.records import ChainStatus, DeploymentRecord, PaymentRecord, RequestDetail, RequestSummary

EXIT_CODES = """exit codes:
  0  printed
  1  nothing on record matches, or the store could not be read
  2  a bad argument, config or store path (the message says what to change)"""

Handler = Callable[[argparse.Namespace, Config, Store], int]


def add_inspection_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the five commands to `oracle`'s sub-commands."""

    def command(name: str, summary: str, handler: Handler) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=summary, description=summary + " Reads the store only: safe while "
                                     "`oracle run` runs.", epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--config", required=True, help="path of the TOML config file (its [store] is read)")
        parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
        parser.set_defaults(handler=lambda args: _run(args, handler))
        return parser

    status = command("status", "Per chain: head, intake cursor and lag, requests by state, failures and spend "
                     "today, gas left in the day's budget, signer and payment-wallet balances.", _status)
    status.add_argument("--offline", action="store_true",
                        help="do not ask the chains' nodes (no head, lag or balances)")
    requests = command("requests", "Requests newest first, with their state and outcome.", _requests)
    requests.add_argument("--state", help="a state (seen, confirmed, accepted, refused, answered, signed, submitted, "
                                          "fulfilled, expired, unprofitable, rolled_back, cancelled), several with "
                                          "commas, or a group: pending, failed")
    requests.add_argument("--since", help="seen since: 30m, 2h, 1d ago; an ISO date or date-time (UTC); unix seconds")
    requests.add_argument("--chain", help="only this chain of the config, by name")
    requests.add_argument("--limit", default="50", help="most requests to list (1-1000, default 50)")
    requests.add_argument("--cursor", help="continue a listing: the cursor the previous page printed")
    info = command("request-info", "One request in full: its states with their times, each model call with its "
                   "cost and payment, its transactions with the gas their receipts show, why it was refused or "
                   "failed, and its receipt.", _request_info)
    info.add_argument("id", help="the request id (64 hex digits, 0x optional, any case) or its key "
                                 "chain_id:oracle:request_id")
    info.add_argument("--chain", help="the config's chain, by name, when the id is on record on several")
    command("models", "The catalog: each deployment's prices and capabilities, and its health from its latest "
            "calls on record.", _models)
    payments = command("payments", "x402 payments newest first.", _payments)
    payments.add_argument("--state", help="a state (reserved, signed, sent, settled, unknown, rejected, expired), "
                                          "several with commas, or the group unresolved")
    payments.add_argument("--limit", default="50", help="most payments to list (1-1000, default 50)")
    payments.add_argument("--cursor", help="continue a listing: the cursor the previous page printed")


def _run(args: argparse.Namespace, handler: Handler) -> int:
    """Load the config, open its store for reading, run the command; every failure is one line."""
    try:
        config = load_config(Path(args.config))
        store = Store.open_reader(config.store.path)
    except (ConfigError, StoreUnreadable) as exc:
        return _fail(str(exc), 2)
    try:
        return handler(args, config, store)
    except (BadQuery, ConfigError) as exc:
        return _fail(str(exc), 2)
    except NotFound as exc:
        return _fail(str(exc), 1)
    except sqlite3.Error as exc:
        return _fail(f"reading the store {config.store.path} failed: {exc}", 1)
    finally:
        store.close()


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


# ---------------------------------------------------------------- the commands


def _status(args: argparse.Namespace, config: Config, store: Store) -> int:
    who = [wallets(store, config, chain) for chain in config.chains]
    reads: Sequence[ChainReads | None] = [None] * len(config.chains)
    if not args.offline:
        reads = asyncio.run(read_chains(config, config.chains, who))
    now = time.time()
    statuses = [chain_status(store, config, chain, w, r, now)
                for chain, w, r in zip(config.chains, who, reads, strict=True)]
    if args.json:
        print(as_json(statuses))
    else:
        print("\n\n".join(_status_text(s) for s in statuses))
    return 0


def _requests(args: argparse.Namespace, config: Config, store: Store) -> int:
    chain_id = config.chain_named(args.chain)[1].chain_id if args.chain else None
    where = RequestFilter(chain_id, parse_states(args.state), parse_since(args.since))
    page = list_requests(store, where, parse_limit(args.limit), args.cursor)
    if args.json:
        print(as_json(page))
        return 0
    names = {c.chain_id: c.name for c in config.chains}
    _print_table(["seen (UTC)", "chain", "request id", "state", "outcome", "fee (wei)"],
                 [[_when(r.seen_at), names.get(r.chain_id, str(r.chain_id)), r.request_id, r.state, _outcome(r),
                   r.fee_wei] for r in page.items], empty="no requests on record match")
    _more(page)
    return 0


def _request_info(args: argparse.Namespace, config: Config, store: Store) -> int:
    chain_id = config.chain_named(args.chain)[1].chain_id if args.chain else None
    key = resolve_request(store, args.id, chain_id)
    detail = request_detail(store, key, {m.id: m.model for m in config.models})
    print(as_json(detail) if args.json else _detail_text(detail))
    return 0


def _models(args: argparse.Namespace, config: Config, store: Store) -> int:
    models = catalog(store, config)
    if args.json:
        print(as_json(models))
        return 0
    _print_table(["id", "model", "payer", "price (micro-USD)", "context", "capabilities", "health", "calls",
                  "failed", "p50 ms"],
                 [[d.id, d.model, d.payer, _price(d), str(d.context_window), ",".join(d.capabilities) or "-",
                   d.health, str(d.calls), str(d.failures), f"{d.p50_ms:.0f}"] for d in models])
    return 0


def _payments(args: argparse.Namespace, config: Config, store: Store) -> int:
    page = list_payments(store, parse_states(args.state, "payment"), parse_limit(args.limit), args.cursor)
    if args.json:
        print(as_json(page))
        return 0
    _print_table(["id", "updated (UTC)", "state", "provider", "amount", "asset", "request", "settlement / error"],
                 [[str(p.id), _when(p.updated_at), p.state, p.provider, p.amount, p.asset, _short_key(p),
                   p.tx_hash or p.error or "-"] for p in page.items], empty="no payments on record match")
    _more(page)
    return 0


# ---------------------------------------------------------------- text


def _status_text(s: ChainStatus) -> str:
    lines = [f"chain {s.name} (id {s.chain_id}), oracle {s.oracle or '(none configured)'}"]
    if s.chain_error:
        lines.append(f"  node       not read: {s.chain_error}")
    head = "-" if s.head is None else str(s.head)
    lag = "-" if s.lag is None else f"{s.lag} blocks"
    lines.append(f"  intake     head {head}, cursor {'-' if s.cursor is None else s.cursor}, lag {lag}")
    states = ", ".join(f"{k} {v}" for k, v in s.requests_by_state.items()) or "none"
    lines.append(f"  requests   {s.pending} pending; by state: {states}")
    lines.append(f"  today      {s.failures_today} failed; models {s.model_spend_today_micro_usd} micro-USD; x402 "
                 + (", ".join(f"{v} units of {a}" for a, v in s.x402_spend_today.items()) or "none"))
    lines.append(f"  gas today  {_coin(s.gas_spent_today_wei)} spent, {_coin(s.gas_left_today_wei)} left of the "
                 f"daily budget {_coin(s.gas_daily_budget_wei)} (native coin)")
    balance = "" if s.signer_balance_wei is None else f", balance {_coin(s.signer_balance_wei)}"
    lines.append(f"  signer     {s.signer or '(not known: its key is not loaded here, no transaction on record)'}"
                 f"{balance}")
    if s.payment_wallet is not None:
        held = ", ".join(f"{v} units of {a}" for a, v in s.payment_wallet_balances.items())
        lines.append(f"  wallet     {s.payment_wallet}" + (f", holds {held}" if held else ""))
    return "\n".join(lines)


def _detail_text(d: RequestDetail) -> str:
    r = d.request
    out = [f"request    {r.request_id}",
           f"key        {r.key}",
           f"requester  {r.requester}, fee {r.fee_wei} wei, deadline {_when_unix(r.deadline)}",
           f"asks       {d.result_type or '?'} result, model spec {d.model_spec!r}, prompt {d.prompt_bytes} bytes",
           f"state      {r.state} ({_outcome(r)}), seen in block {r.block_number}"]
    if d.detail:
        out.append(f"detail     {d.detail}")
    out.append("\nhistory")
    out += _table(["at (UTC)", "state", "reason", "detail"],
                  [[_when(h.at), h.state, h.reason, h.detail or "-"] for h in d.history], "  ",
                  empty="(none on record)")
    out.append("\nmodel calls")
    out += _table(["#", "deployment", "model", "outcome", "latency ms", "tokens in/out", "cost micro-USD",
                   "payment"],
                  [[str(a.attempt_id), a.deployment, a.model or "-", a.outcome or "started", f"{a.latency_ms:.0f}",
                    f"{a.usage.get('input', 0)}/{a.usage.get('output', 0)}",
                    str(a.cost_micro_usd),
                    f"{a.payment_id} {a.payment_state} {a.payment_amount}" if a.payment_id is not None else "-"]
                   for a in d.attempts], "  ", empty="(none)")
    out.append("\ntransactions")
    out += _table(["tx", "state", "nonce", "block", "gas used", "gas cost (wei)", "responses"],
                  [[t.tx_hash, t.state, str(t.nonce), _dash(t.block_number), _dash(t.gas_used), t.gas_cost_wei or "-",
                    str(t.requests_carried)] for t in d.transactions], "  ", empty="(none)")
    if r.fulfill_tx and r.fulfill_tx not in {t.tx_hash for t in d.transactions}:
        out.append(f"  settled by {r.fulfill_tx} (not sent by this daemon)")
    out.append(f"\nreceipt    {d.receipt_hash or '(none yet)'}")
    if d.receipt is not None:
        out.append(as_json(d.receipt))
    return "\n".join(out)


def _outcome(r: RequestSummary) -> str:
    if r.status == "none":
        return "-"
    return r.status if r.reason == "none" else f"{r.status}: {r.reason}"


def _price(d: DeploymentRecord) -> str:
    if d.call_price:
        return f"{d.call_price}/call"
    return f"{d.input_price} in, {d.output_price} out /M tok"


def _short_key(p: PaymentRecord) -> str:
    return p.request_key.rsplit(":", 1)[-1][:18] + "…"


def _coin(wei: str) -> str:
    """Wei as the native coin (18 decimals), trailing zeros trimmed."""
    whole, frac = divmod(int(wei), 10**18)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".")


def _when(iso: str | None) -> str:
    return iso.replace("T", " ").removesuffix("Z")[:19] if iso else "-"


def _when_unix(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _dash(v: object) -> str:
    return "-" if v is None else str(v)


def _table(headers: list[str], rows: list[list[str]], indent: str = "", empty: str = "") -> list[str]:
    if not rows:
        return [indent + empty] if empty else []
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [headers, *rows]]


def _print_table(headers: list[str], rows: list[list[str]], empty: str = "") -> None:
    print("\n".join(_table(headers, rows, empty=empty)))


def _more(page: Page[RequestSummary] | Page[PaymentRecord]) -> None:
    if page.next_cursor:
        print(f"more: add --cursor {page.next_cursor}")
