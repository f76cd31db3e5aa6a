"""Our transactions against the chain's receipts: the receipt decides, and a reorg gives back the gas."""

from __future__ import annotations

from oracle.store import Store, StoredTx, TxState

SENDER = "0x" + "33" * 20


def _tx(n: int, nonce: int = 0) -> StoredTx:
    return StoredTx(bytes([n]) * 32, 31337, SENDER, nonce, b"raw", 10, 1, [], TxState.PENDING, float(n), None, None)


def test_a_transaction_given_up_as_dropped_and_mined_after_all_counts(store: Store) -> None:
    tx = _tx(1)
    store.txs.record(tx)
    assert store.txs.transition(tx.tx_hash, [TxState.PENDING], TxState.DROPPED)
    store.txs.record_mined(tx, 30, b"\x0b" * 32, 21_000, 21_000 * 10, "2026-12-01")
    assert store.txs.at_nonce(31337, SENDER, 0)[0].state == TxState.MINED
    assert store.txs.gas_spent(31337, "2026-12-01") == 210_000
    store.txs.record_mined(tx, 30, b"\x0b" * 32, 21_000, 21_000 * 10, "2026-12-01")  # seen again: counted once
    assert store.txs.gas_spent(31337, "2026-12-01") == 210_000


def test_a_mined_transaction_reorganised_away_is_pending_and_its_gas_given_back(store: Store) -> None:
    tx = _tx(2)
    store.txs.record(tx)
    store.txs.record_mined(tx, 30, b"\x0b" * 32, 21_000, 210_000, "2026-12-01")
    assert store.txs.transition(tx.tx_hash, [TxState.MINED], TxState.CONFIRMED)
    mined = store.txs.at_nonce(31337, SENDER, 0)[0]
    assert store.txs.reopen(mined) == []
    again = store.txs.at_nonce(31337, SENDER, 0)[0]
    assert again.state == TxState.PENDING and again.block_number is None
    assert store.txs.gas_spent(31337, "2026-12-01") == 0
    assert store.txs.reopen(again) == []  # not on record as mined: nothing to give back twice
    assert store.txs.gas_spent(31337, "2026-12-01") == 0
