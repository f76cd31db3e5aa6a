"""A request's row against the chain: a settlement seen on-chain wins from any state, a reorg takes back
what it may, another request under the same id starts over, and a reopened settlement resumes where
its answer stands."""

from __future__ import annotations

import pytest

from oracle.store import RequestState, Store
from oracle.store.requests import ROLLABLE, UNSETTLED
from tests.store.conftest import a_request, put_in_state

R = RequestState
EVERY = list(RequestState)


@pytest.mark.parametrize("settled", [R.FULFILLED, R.CANCELLED])
@pytest.mark.parametrize("state", UNSETTLED)
def test_a_settlement_on_chain_wins_from_any_state(store: Store, state: RequestState, settled: RequestState) -> None:
    r = a_request()
    store.requests.insert(r)
    put_in_state(store, r.key, state)
    store.requests.mark_settled(r.key, settled, 12, b"\x09" * 32 if settled == R.FULFILLED else None, b"\x0c" * 32)
    found = store.requests.get(r.key)
    assert found is not None and found.state == settled
    # what the pipeline or the transaction manager was about to write no longer lands
    assert not store.requests.store_signature(r.key, b"sig")
    assert not store.requests.transition(r.key, [R.SIGNED, R.SUBMITTED], R.EXPIRED)
    assert store.requests.settlements_in_blocks(31337, r.oracle, 12, 12) == [(r.key, 12, b"\x0c" * 32)]


@pytest.mark.parametrize(("first", "then"), [(R.CANCELLED, R.FULFILLED), (R.FULFILLED, R.CANCELLED)])
def test_a_reorg_that_settles_it_the_other_way_is_followed(store: Store, first: RequestState,
                                                          then: RequestState) -> None:
    """The block that settled it was replaced by one that settles it the other way (the subscription saw
    the first, the sweep reads the second): the row names the settlement on the chain now, so the
    sweep's check of settlement blocks leaves it alone."""
    r = a_request()
    store.requests.insert(r)
    store.requests.mark_settled(r.key, first, 12, None, b"\x0a" * 32)
    store.requests.mark_settled(r.key, then, 12, None, b"\x0b" * 32)
    found = store.requests.get(r.key)
    assert found is not None and found.state == then
    assert store.requests.settlements_in_blocks(31337, r.oracle, 12, 12) == [(r.key, 12, b"\x0b" * 32)]


@pytest.mark.parametrize("state", EVERY)
def test_a_reorg_below_a_request_rolls_back_all_but_what_is_settled_or_given_up(store: Store,
                                                                                state: RequestState) -> None:
    r = a_request(block=20)
    store.requests.insert(r)
    put_in_state(store, r.key, state)
    rolled = store.requests.rollback_after(31337, r.oracle, 19)
    found = store.requests.get(r.key)
    assert found is not None
    if state in ROLLABLE:
        assert rolled == [r.key] and found.state == R.ROLLED_BACK
    else:
        assert rolled == [] and found.state == state


@pytest.mark.parametrize("state", EVERY)
def test_another_request_under_the_same_id_starts_over(store: Store, state: RequestState) -> None:
    old = a_request(block=20)
    store.requests.insert(old)
    put_in_state(store, old.key, state, signature=b"old signature", settled_block=21)
    store.routing.start_attempt(old.key, 1, "some-model")
    new = a_request(block=22, params=b"other params", block_hash=b"\x02" * 32, state=R.SEEN)
    store.requests.reinclude(new)
    found = store.requests.get(new.key)
    assert found is not None and found.state == R.SEEN and found.params == b"other params"
    assert found.signature is None and found.block_number == 22
    assert store.routing.attempts(new.key) == []  # the old request's calls are not this one's


@pytest.mark.parametrize("state", [R.SEEN, R.CONFIRMED, R.SIGNED, R.SUBMITTED, R.ROLLED_BACK])
def test_the_same_request_in_another_block_keeps_its_answer(store: Store, state: RequestState) -> None:
    r = a_request(block=20)
    store.requests.insert(r)
    put_in_state(store, r.key, state, signature=b"signature")
    store.requests.reinclude(a_request(block=23, block_hash=b"\x03" * 32, state=R.SEEN))
    found = store.requests.get(r.key)
    assert found is not None and found.block_number == 23 and found.signature == b"signature"
    assert found.state == (R.SEEN if state == R.ROLLED_BACK else state)  # a rolled back one waits its depth again


@pytest.mark.parametrize("settled", [R.FULFILLED, R.CANCELLED])
@pytest.mark.parametrize("signed", [True, False])
def test_a_settlement_reorganised_away_resumes_where_its_answer_stands(store: Store, settled: RequestState,
                                                                       signed: bool) -> None:
    r = a_request(block=20)
    store.requests.insert(r)
    put_in_state(store, r.key, settled, settled_block=25, signature=b"signature" if signed else None)
    assert store.requests.reopen_settled_after(31337, r.oracle, 24) == [r.key]
    found = store.requests.get(r.key)
    assert found is not None and found.state == (R.SIGNED if signed else R.CONFIRMED)


def test_our_transaction_reorganised_away_carries_its_requests_again(store: Store) -> None:
    r = a_request(block=20)
    store.requests.insert(r)
    put_in_state(store, r.key, R.FULFILLED, settled_block=25)
    assert store.requests.reopen_settled_by([r.key], 25, b"\x05" * 32) == [r.key]
    found = store.requests.get(r.key)
    assert found is not None and found.state == R.SUBMITTED and found.fulfill_tx == b"\x05" * 32


def test_a_page_of_work_is_in_block_order_across_states(store: Store) -> None:
    """The pipeline's page: keys in the given states, oldest block first whatever their state, at most
    `limit`; other states left out; rows read back in the order asked."""
    placed = {1: (30, R.CONFIRMED), 2: (10, R.SIGNED), 3: (20, R.ANSWERED), 4: (15, R.FULFILLED), 5: (12, R.CONFIRMED),
              6: (40, R.ACCEPTED)}
    keys = {}
    for n, (block, state) in placed.items():
        r = a_request(n, block=block)
        store.requests.insert(r)
        put_in_state(store, r.key, state)
        keys[n] = r.key
    work = [R.CONFIRMED, R.ACCEPTED, R.ANSWERED, R.SIGNED]
    assert store.requests.keys_in_state(31337, work, limit=10) == [keys[n] for n in (2, 5, 3, 1, 6)]
    assert store.requests.keys_in_state(31337, work, limit=3) == [keys[n] for n in (2, 5, 3)]
    assert store.requests.keys_in_state(31337, [R.FULFILLED], limit=3) == [keys[4]]
    rows = store.requests.get_many([keys[3], "31337:nothing", keys[2]])
    assert [r.key for r in rows] == [keys[3], keys[2]] and rows[0].state == R.ANSWERED
