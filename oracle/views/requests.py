"""Requests: pages of them under filters, one request in full, and finding one from what an operator
types (a request id in any case, with or without 0x, or a full key)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from oracle.events import EventDecodeError, decode_params
from oracle.protocol import ReasonCode, ResultType, Status
from oracle.store import Payment, Store
from oracle.store.queries import SeenRequest, TxRecord
from oracle.views.errors import BadQuery, NotFound
from oracle.views.paging import Page, decode_cursor, encode_cursor
from oracle.views.parse import parse_request_id
from oracle.views.records import (
    AttemptRecord,
    PaymentRecord,
    RequestDetail,
    RequestSummary,
    StateChangeRecord,
    TransactionRecord,
    hex0x,
    iso,
)


@dataclass(frozen=True)
class RequestFilter:
    chain_id: int | None = None
    states: tuple[str, ...] = ()  # store state names (parse_states)
    since: float | None = None  # unix seconds: seen at or after


def list_requests(store: Store, where: RequestFilter, limit: int, cursor: str | None = None) -> Page[RequestSummary]:
    """Requests newest first (by when the daemon first saw them)."""
    after = None
    if cursor:
        seen_at, key = decode_cursor("requests", cursor, (float, str))
        after = (float(seen_at), str(key))
    rows = store.queries.requests_page(chain_id=where.chain_id, states=where.states, since=where.since,
                                       limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor("requests", [float(rows[-1].seen_at), rows[-1].request.key]) if more else None
    return Page([summary(r) for r in rows], next_cursor)


def resolve_request(store: Store, text: str, chain_id: int | None = None) -> str:
    """The key of the request `text` names: a key `chain_id:oracle:0x<id>`, or a request id alone (then
    it must be on record on one chain only, or `chain_id` given)."""
    if text.count(":") == 2:
        chain, oracle, rid = text.split(":")
        if not chain.strip().isdigit() or len(oracle.strip().lower().removeprefix("0x")) != 40:
            raise BadQuery(f"not a request key: {text!r}: give chain_id:oracle_address:request_id, or the "
                           f"request id alone")
        key = f"{int(chain)}:0x{oracle.strip().lower().removeprefix('0x')}:0x{parse_request_id(rid).hex()}"
        if store.queries.seen_request(key) is None:
            raise NotFound(f"no request {key} on record in this store")
        return key
    request_id = parse_request_id(text)
    keys = store.queries.keys_with_request_id(request_id)
    if chain_id is not None:
        keys = [k for k in keys if k.startswith(f"{chain_id}:")]
    if not keys:
        raise NotFound(f"no request 0x{request_id.hex()} on record in this store"
                       + (f" on chain {chain_id}" if chain_id is not None else ""))
    if len(keys) > 1:
        raise BadQuery(f"request 0x{request_id.hex()} is on record {len(keys)} times ({', '.join(keys)}): "
                       f"name one by its key, or give the chain")
    return keys[0]


def request_detail(store: Store, key: str, models: Mapping[str, str] | None = None) -> RequestDetail:
    """Everything on record of one request: its states with their times, each model call with its cost
    and payment, each transaction that carried its response with the gas the receipt shows, the refusal
    or failure detail, and its receipt. `models` maps deployment ids to model ids (the config's)."""
    seen = store.queries.seen_request(key)
    if seen is None:
        raise NotFound(f"no request {key} on record in this store")
    r = seen.request
    try:
        params = decode_params(r.params).params
        model_spec, result_type, prompt_bytes = params.model_spec, ResultType(params.result.kind).name.lower(), \
            len(params.prompt)
    except (EventDecodeError, ValueError):
        model_spec, result_type, prompt_bytes = "", "", 0
    payments = {p.attempt_id: p for p in store.queries.payments_page(states=(), limit=10_000, before_id=None,
                                                                      request_key=key)}
    attempts = []
    for a in store.routing.attempts(key):
        paid = payments.get(a.attempt_id)
        attempts.append(AttemptRecord(
            a.attempt_id, a.deployment, (models or {}).get(a.deployment, ""), a.outcome, a.kind, a.http_status,
            round(float(a.latency_ms or 0.0), 1), dict(a.usage), int(a.cost or 0),
            paid.id if paid else None, paid.state if paid else None, str(paid.amount) if paid else None, a.error))
    stored_receipt = store.requests.receipt(key)
    receipt = json.loads(stored_receipt[0]) if stored_receipt is not None else None
    return RequestDetail(
        request=summary(seen), model_spec=model_spec, result_type=result_type, prompt_bytes=prompt_bytes,
        detail=r.reason_detail,
        history=[StateChangeRecord(iso(h.at), h.state, _reason(h.reason), h.detail)
                 for h in store.queries.history(key)],
        attempts=attempts, transactions=[transaction(t) for t in store.queries.txs_carrying(r.chain_id, key)],
        payments=[payment(p) for p in sorted(payments.values(), key=lambda p: p.id)],
        receipt_hash=hex0x(r.receipt_hash), receipt=receipt)


def summary(seen: SeenRequest) -> RequestSummary:
    r = seen.request
    return RequestSummary(
        key=r.key, chain_id=r.chain_id, oracle=r.oracle, request_id="0x" + r.request_id.hex(), requester=r.requester,
        state=r.state, status=_status(r.status), reason=_reason(r.reason), fee_wei=str(r.fee), deadline=r.deadline,
        block_number=r.block_number, seen_at=iso(seen.seen_at), updated_at=iso(seen.updated_at),
        fulfill_tx=hex0x(r.fulfill_tx))


def transaction(t: TxRecord) -> TransactionRecord:
    return TransactionRecord(
        tx_hash="0x" + t.tx_hash.hex(), state=t.state, sender=t.sender, nonce=t.nonce, sent_at=iso(t.sent_at),
        block_number=t.block_number, gas_used=t.gas_used,
        gas_cost_wei=str(t.gas_cost) if t.gas_cost is not None else None, max_fee_wei=str(t.max_fee),
        priority_fee_wei=str(t.priority_fee), requests_carried=len(t.request_keys))


def payment(p: Payment) -> PaymentRecord:
    return PaymentRecord(id=p.id, request_key=p.request_key, attempt_id=p.attempt_id, provider=p.provider,
                         state=p.state, amount=str(p.amount), asset=p.asset, network=p.network, pay_to=p.pay_to,
                         payer=p.payer, tx_hash=p.tx_hash, error=p.error, updated_at=iso(p.updated_at))


def _status(value: int) -> str:
    return Status(value).name.lower() if value in Status._value2member_map_ else str(value)


def _reason(value: int) -> str:
    return ReasonCode(value).name.lower() if value in ReasonCode._value2member_map_ else str(value)
