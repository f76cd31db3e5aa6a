"""The read side on a real store file: pages newest first that give every row once under any filter,
cursors that refuse what is not theirs, each state change kept with its time, ids found in any case,
and a reader that never writes. Plus how operators' text is read (states, times, limits)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from oracle.protocol import ReasonCode
from oracle.store import RequestState, Store, StoredRequest, StoreUnreadable, request_key
from oracle.store.migrations import migrate
from oracle.views import (
    BadQuery,
    NotFound,
    RequestFilter,
    list_payments,
    list_requests,
    parse_limit,
    parse_since,
    parse_states,
    request_detail,
    resolve_request,
)
from oracle.views.paging import encode_cursor
from tests.store.conftest import ORACLE, a_request

R = RequestState


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "oracle.sqlite"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    s = Store.open(path)
    yield s
    s.close()


def _fill(store: Store, n: int, chain_of: dict[int, int] | None = None) -> list[str]:
    """n requests; those of one block of four share their seen time (ties are paged by key)."""
    keys = []
    for i in range(1, n + 1):
        r = a_request(i)
        if chain_of and i in chain_of:
            r = _on_chain(r, chain_of[i])
        store.requests.insert(r)
        store.db.write("UPDATE requests SET seen_at=? WHERE key=?", (1_000_000.0 + i // 4, r.key))
        keys.append(r.key)
    store.commit_now()
    return keys


def _on_chain(r: StoredRequest, chain_id: int) -> StoredRequest:
    return replace(r, chain_id=chain_id, key=request_key(chain_id, ORACLE, r.request_id))


def _newest_first(store: Store, keys: list[str]) -> list[str]:
    seen = {k: store.queries.seen_request(k).seen_at for k in keys}  # type: ignore[union-attr]
    return sorted(keys, key=lambda k: (seen[k], k), reverse=True)


def _all_pages(store: Store, where: RequestFilter, limit: int) -> list[str]:
    out, cursor = [], None
    while True:
        page = list_requests(store, where, limit, cursor)
        assert len(page.items) <= limit
        out += [r.key for r in page.items]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def test_pages_give_every_request_once_newest_first_ties_included(store: Store) -> None:
    keys = _fill(store, 25)
    assert _all_pages(store, RequestFilter(), 7) == _newest_first(store, keys)
    assert _all_pages(store, RequestFilter(), 25) == _newest_first(store, keys)


def test_a_request_arriving_between_pages_does_not_shift_the_next_page(store: Store) -> None:
    keys = _fill(store, 10)
    first = list_requests(store, RequestFilter(), 4)
    store.requests.insert(a_request(99))  # newer than all: belongs before the first page, not in the next
    store.commit_now()
    rest = _all_pages_from(store, first.next_cursor)
    assert [r.key for r in first.items] + rest == _newest_first(store, keys)


def _all_pages_from(store: Store, cursor: str | None) -> list[str]:
    out = []
    while cursor is not None:
        page = list_requests(store, RequestFilter(), 3, cursor)
        out += [r.key for r in page.items]
        cursor = page.next_cursor
    return out


def test_filters_by_chain_state_and_time(store: Store) -> None:
    keys = _fill(store, 12, chain_of={2: 10, 3: 10})
    on_10 = [k for k in keys if k.startswith("10:")]
    assert sorted(_all_pages(store, RequestFilter(chain_id=10), 1)) == sorted(on_10)
    store.requests.transition(keys[5], [R.CONFIRMED], R.ACCEPTED)
    store.requests.transition(keys[6], [R.CONFIRMED], R.ACCEPTED)
    store.requests.transition(keys[6], [R.ACCEPTED], R.EXPIRED)
    store.commit_now()
    assert _all_pages(store, RequestFilter(states=parse_states("accepted")), 5) == [keys[5]]
    assert _all_pages(store, RequestFilter(states=parse_states("failed")), 5) == [keys[6]]
    assert len(_all_pages(store, RequestFilter(states=parse_states("pending")), 5)) == 11
    since = 1_000_000.0 + 2  # seen at 1_000_000 + i // 4: i = 8..12
    assert sorted(_all_pages(store, RequestFilter(since=since), 2)) == sorted(keys[7:])


def test_a_cursor_is_only_good_for_its_own_list(store: Store) -> None:
    _fill(store, 3)
    for bad in ("x", "", "bm90IGpzb24", encode_cursor("payments", [3]), encode_cursor("requests", ["a", "b"]),
                encode_cursor("requests", [True, "k"])):
        if bad:
            with pytest.raises(BadQuery, match="not a cursor of this list"):
                list_requests(store, RequestFilter(), 2, bad)
    with pytest.raises(BadQuery, match="not a cursor of this list"):
        list_payments(store, (), 2, encode_cursor("requests", [1.0, "k"]))


def test_each_state_change_is_kept_with_its_time_and_reason(store: Store) -> None:
    (key,) = _fill(store, 1)
    unsupported = int(ReasonCode.UNSUPPORTED)
    store.requests.transition(key, [R.CONFIRMED], R.REFUSED, reason=unsupported, detail="unknown model spec option "
                              "'colour'")
    store.requests.transition(key, [R.REFUSED], R.REFUSED, detail="a refresh, not a move")
    store.requests.transition(key, [R.REFUSED], R.ANSWERED, reason=unsupported, status=2)
    store.commit_now()
    history = request_detail(store, key).history
    assert [h.state for h in history] == ["confirmed", "refused", "answered"]
    assert history[1].detail == "unknown model spec option 'colour'" and history[1].reason == "unsupported"
    times = [h.at or "" for h in history]
    assert times == sorted(times) and all(times)


def test_a_request_is_found_by_its_id_in_any_case_or_by_its_key(store: Store) -> None:
    keys = _fill(store, 2, chain_of={2: 10})
    rid = keys[0].rsplit(":", 1)[1]
    for text in (rid, rid.upper().replace("0X", "0x"), rid[2:], rid[2:].upper()):
        assert resolve_request(store, text) == keys[0]
    chain, oracle, _ = keys[0].split(":")
    assert resolve_request(store, f"{chain}:{oracle.upper().replace('0X', '0x')}:{rid[2:].upper()}") == keys[0]
    with pytest.raises(NotFound, match="no request 0x" + "ab" * 32):
        resolve_request(store, "ab" * 32)
    with pytest.raises(BadQuery, match="not a request id"):
        resolve_request(store, "0x12")
    with pytest.raises(BadQuery, match="not a request key"):
        resolve_request(store, f"x:{oracle}:{rid}")


def test_an_id_on_two_chains_needs_the_chain(store: Store) -> None:
    store.requests.insert(a_request(1))
    store.requests.insert(_on_chain(a_request(1), 10))
    store.commit_now()
    rid = "0x" + (1).to_bytes(32, "big").hex()
    with pytest.raises(BadQuery, match="on record 2 times"):
        resolve_request(store, rid)
    assert resolve_request(store, rid, chain_id=10).startswith("10:")


def test_payments_page_newest_first_by_state(store: Store) -> None:
    for attempt in range(1, 6):
        store.payments.record_refused(f"k{attempt}", attempt, "p", "0x" + "11" * 20, "eip155:1", "0xa", "0xb", "0xc",
                                      "too dear")
    store.commit_now()
    first = list_payments(store, parse_states("rejected", "payment"), 2)
    second = list_payments(store, parse_states("rejected", "payment"), 2, first.next_cursor)
    third = list_payments(store, parse_states("rejected", "payment"), 2, second.next_cursor)
    assert [p.id for p in first.items + second.items + third.items] == [5, 4, 3, 2, 1]
    assert third.next_cursor is None
    assert list_payments(store, parse_states("unresolved", "payment"), 10).items == []


# ---------------------------------------------------------------- reading beside the daemon


def test_the_reader_never_writes(store: Store, path: Path) -> None:
    _fill(store, 1)
    reader = Store.open_reader(path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            reader.db.conn.execute("DELETE FROM requests")
        assert len(list_requests(reader, RequestFilter(), 10).items) == 1
    finally:
        reader.close()


def test_the_reader_refuses_a_missing_foreign_or_older_store(tmp_path: Path) -> None:
    with pytest.raises(StoreUnreadable, match=r"no store at .*check \[store\] path"):
        Store.open_reader(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()
    (tmp_path / "text.sqlite").write_text("not a database, but long enough to be read as one " * 20)
    with pytest.raises(StoreUnreadable, match="is not an oracle store"):
        Store.open_reader(tmp_path / "text.sqlite")
    old = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    migrate(old, upto=7)
    old.close()
    with pytest.raises(StoreUnreadable, match="written by an older oracle: run this version's `oracle run`"):
        Store.open_reader(tmp_path / "old.sqlite")


# ---------------------------------------------------------------- what operators type


def test_states_are_read_in_any_case_with_groups_and_unknown_ones_named() -> None:
    assert parse_states("Fulfilled,EXPIRED") == ("fulfilled", "expired")
    assert parse_states("failed") == ("expired", "unprofitable")
    assert parse_states("unresolved", "payment") == ("reserved", "signed", "sent", "unknown")
    with pytest.raises(BadQuery, match="unknown request state 'done': use one of seen, confirmed"):
        parse_states("fulfilled,done")
    with pytest.raises(BadQuery, match="unknown payment state 'fulfilled'"):
        parse_states("fulfilled", "payment")


def test_times_are_spans_ago_iso_dates_or_unix_seconds() -> None:
    now = 1_800_000_000.0
    assert parse_since("2h", now) == now - 7_200
    assert parse_since("30M", now) == now - 1_800
    assert parse_since("1d", now) == now - 86_400
    assert parse_since("2026-12-01", now) == 1_796_083_200
    assert parse_since("2026-12-01T01:00:00+01:00", now) == 1_796_083_200
    assert parse_since("1796083200", now) == 1_796_083_200
    for bad in ("yesterday", "2h ago", "-1d", "2026-13-01", "12"):
        with pytest.raises(BadQuery, match="not a time"):
            parse_since(bad, now)


def test_limits_are_bounded() -> None:
    assert parse_limit(None) == 50 and parse_limit("1") == 1 and parse_limit(1000) == 1000
    for bad in ("0", "1001", "-3", "ten", "1.5"):
        with pytest.raises(BadQuery, match="from 1 to 1000"):
            parse_limit(bad)


def test_the_reader_reads_a_store_no_daemon_has_open(path: Path) -> None:
    writer = Store.open(path)
    _fill(writer, 2)
    writer.close()  # the daemon stopped: its WAL files are gone
    reader = Store.open_reader(path)
    try:
        assert len(list_requests(reader, RequestFilter(), 10).items) == 2
    finally:
        reader.close()
