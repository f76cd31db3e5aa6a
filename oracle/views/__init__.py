"""The read side operators use: the store (and, for balances and heads, the chain) as plain, typed,
JSON-ready records. The inspection commands print them; the operator HTTP API serves the same records.

    store = Store.open_reader(config.store.path)        # never locks, never writes: safe beside `oracle run`
    page = list_requests(store, RequestFilter(states=parse_states("pending")), limit=50)
    more = list_requests(store, RequestFilter(...), limit=50, cursor=page.next_cursor)
    detail = request_detail(store, resolve_request(store, "0x4ef4..."))
    print(as_json(detail))

Bad input (an unknown state, a malformed id, cursor or time) raises `BadQuery`, a missing request
`NotFound`; both say what to do.
"""

from oracle.views.catalog import catalog
from oracle.views.errors import BadQuery, NotFound
from oracle.views.paging import Page
from oracle.views.parse import parse_limit, parse_since, parse_states
from oracle.views.payments import list_payments
from oracle.views.records import (
    AttemptRecord,
    ChainStatus,
    DeploymentRecord,
    PaymentRecord,
    RequestDetail,
    RequestSummary,
    StateChangeRecord,
    TransactionRecord,
    as_json,
)
from oracle.views.requests import RequestFilter, list_requests, request_detail, resolve_request
from oracle.views.status import ChainReads, Wallets, chain_status, read_chain, read_chains, wallets

__all__ = ["AttemptRecord", "BadQuery", "ChainReads", "ChainStatus", "DeploymentRecord", "NotFound", "Page",
           "PaymentRecord", "RequestDetail", "RequestFilter", "RequestSummary", "StateChangeRecord",
           "TransactionRecord", "Wallets", "as_json", "catalog", "chain_status", "list_payments", "list_requests",
           "parse_limit", "parse_since", "parse_states", "read_chain", "read_chains", "request_detail",
           "resolve_request", "wallets"]
