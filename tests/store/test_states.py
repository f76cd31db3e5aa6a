"""The state machines: the README shows their tables, and every move a table does not allow raises,
naming both states, and leaves the row as it was."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from oracle.store import ForbiddenTransition, Payment, PaymentState, RequestState, Store, StoredTx, TxState
from oracle.store.states import MACHINES, PAYMENT, REQUEST, TX, Machine, describe, untaken
from tests.store.conftest import a_request, put_in_state

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_each_machine_as_its_table() -> None:
    text = README.read_text()
    shown = re.search(r"<!-- state machines -->\n```\n(.*?)\n```\n<!-- /state machines -->", text, re.S)
    assert shown is not None, "README.md lost its state machines block"
    assert shown.group(1) == "\n\n".join(describe(m) for m in MACHINES), (
        "the README's state machines differ from oracle/store/states.py: paste describe() of each")


def _forbidden(m: Machine[Any]) -> list[tuple[str, str]]:
    return [(a, b) for a in m.states for b in m.states if a != b and (a, b) not in m.edges]


@pytest.mark.parametrize(("frm", "to"), _forbidden(REQUEST))
def test_a_forbidden_request_move_raises_and_changes_nothing(store: Store, frm: str, to: str) -> None:
    r = a_request()
    store.requests.insert(r)
    put_in_state(store, r.key, RequestState(frm))
    with pytest.raises(ForbiddenTransition, match=f"{frm} -> {to}"):
        store.requests.transition(r.key, [RequestState(frm)], RequestState(to))
    found = store.requests.get(r.key)
    assert found is not None and found.state == frm


@pytest.mark.parametrize(("frm", "to"), _forbidden(TX))
def test_a_forbidden_transaction_move_raises_and_changes_nothing(store: Store, frm: str, to: str) -> None:
    tx = StoredTx(b"\x07" * 32, 31337, "0x" + "33" * 20, 0, b"raw", 1, 1, [], TxState.PENDING, 0.0, None, None)
    store.txs.record(tx)
    store.db.write("UPDATE txs SET state=? WHERE tx_hash=?", (frm, tx.tx_hash))
    with pytest.raises(ForbiddenTransition, match=f"{frm} -> {to}"):
        store.txs.transition(tx.tx_hash, [TxState(frm)], TxState(to))
    assert store.txs.at_nonce(31337, tx.sender, 0)[0].state == frm


@pytest.mark.parametrize(("frm", "to"), _forbidden(PAYMENT))
def test_a_forbidden_payment_move_raises_and_changes_nothing(store: Store, frm: str, to: str) -> None:
    row = store.payments.reserve(Payment(0, "k", 1, "p", "r", "eip155:1", "0xa", "0xb", 5, "0xc", 2, "", 0, "",
                                         PaymentState.RESERVED, "", "", False), 0.0, 3600,
                                 {"total": 10, "per_provider": 10, "per_requester": 10}, 8)
    assert not isinstance(row, str)
    store.db.write("UPDATE payments SET state=? WHERE id=?", (frm, row.id))
    with pytest.raises(ForbiddenTransition, match=f"{frm} -> {to}"):
        store.payments.transition(row.id, [PaymentState(frm)], PaymentState(to))
    found = store.payments.payment(row.id)
    assert found is not None and found.state == frm


def test_a_row_cannot_start_in_a_later_state(store: Store) -> None:
    with pytest.raises(ForbiddenTransition, match="cannot start in fulfilled"):
        store.requests.insert(a_request(state=RequestState.FULFILLED))
    with pytest.raises(ForbiddenTransition, match="cannot start in mined"):
        store.txs.record(StoredTx(b"\x08" * 32, 31337, "0x" + "33" * 20, 0, b"", 1, 1, [], TxState.MINED, 0.0,
                                  None, None))


def test_a_move_from_a_state_the_row_has_left_does_nothing(store: Store) -> None:
    """Compare-and-set: a task acting on what it read earlier cannot overwrite what another task wrote."""
    r = a_request()
    store.requests.insert(r)
    store.requests.mark_settled(r.key, RequestState.FULFILLED, 12)
    assert not store.requests.transition(r.key, [RequestState.CONFIRMED], RequestState.ACCEPTED)
    assert not store.requests.store_signature(r.key, b"sig")
    found = store.requests.get(r.key)
    assert found is not None and found.state == RequestState.FULFILLED


def test_untaken_names_what_a_log_lacks() -> None:
    every = [f"{m.name} {a} {b}" for m in MACHINES for a, b in m.edges]
    assert untaken(every) == []
    assert untaken(every[1:]) == [f"{every[0].split()[0]}: {every[0].split()[1]} -> {every[0].split()[2]}"]
