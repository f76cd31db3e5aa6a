"""`InFlight`: which responses the transaction manager holds and what becomes of them, in one place.

A response is held from the moment the broadcaster takes it from the queue until the transaction
carrying it is final: `sending` (being built), then carried (on record in a transaction not yet
final). A response whose request is not open on-chain is held back a while (`hold`) while the watcher
learns whether it was settled by someone else or reorganised away. Every request-state move the
transaction manager makes goes through here, so the memory and the store never disagree."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from oracle.store import Requests, RequestState, StoredTx

log = logging.getLogger(__name__)
R = RequestState

# A response the transaction manager holds is signed (queued) or submitted (carried by a transaction).
QUEUED = (R.SIGNED, R.SUBMITTED)
# How long a response whose request is not open on-chain is held back before it may be sent again.
GONE_HOLD_SECONDS = 5.0


class InFlight:
    def __init__(self, requests: Requests) -> None:
        self.requests = requests
        self._carried: set[str] = set()  # request keys carried by a transaction not yet final
        self._sending: set[str] = set()  # taken from the queue, not yet on record in a transaction
        self._held: dict[str, float] = {}  # request key -> until when it is not sent
        self._strikes: dict[str, int] = {}  # request key -> transactions carrying it the node refused for good

    def holds(self, key: str) -> bool:
        if key in self._held and self._held[key] <= time.monotonic():
            del self._held[key]
        return key in self._carried or key in self._sending or key in self._held

    @property
    def holding(self) -> int:
        """Responses held still `signed`: being sent or held back."""
        now = time.monotonic()
        self._held = {k: t for k, t in self._held.items() if t > now}  # (a key never asked of again)
        return len(self._sending) + len(self._held)

    def carried(self, key: str) -> bool:
        return key in self._carried

    def start_sending(self, keys: Iterable[str]) -> None:
        """Taken from the queue into a transaction being built."""
        self._sending.update(keys)

    def stop_sending(self, keys: Iterable[str]) -> None:
        self._sending.difference_update(keys)

    def still_signed(self, key: str) -> bool:
        """Whether the request is still `signed` (nothing stored it unprofitable, expired, ... meanwhile)."""
        row = self.requests.get(key)
        return row is not None and row.state == R.SIGNED

    def carry(self, tx: StoredTx) -> None:
        """`tx` carries its responses until it is final (on record as submitted by the caller)."""
        self._carried.update(tx.request_keys)

    def submitted(self, tx: StoredTx) -> None:
        """`tx` is on record: its responses are submitted, carried by it."""
        self.requests.mark_submitted(tx.request_keys, tx.tx_hash)
        self.carry(tx)

    def final(self, tx: StoredTx) -> None:
        self._carried.difference_update(tx.request_keys)

    def fulfilled(self, key: str, tx: StoredTx, block_number: int) -> None:
        """`tx`, final, fulfilled the request."""
        self.requests.mark_settled(key, R.FULFILLED, block_number, tx.tx_hash, tx.block_hash)

    def give_up(self, key: str, to: RequestState, detail: str) -> bool:
        """The response is not sent again: its request is stored in `to` with the reason."""
        self._carried.discard(key)
        return self.requests.transition(key, QUEUED, to, detail=detail)

    def unprofitable(self, key: str, fee: int, gas: int, max_fee: int) -> None:
        detail = (f"fee {fee} wei does not cover {gas} gas at {max_fee} wei/gas ({gas * max_fee} wei): not "
                  f"answered; the requester can cancel after the deadline")
        if self.give_up(key, R.UNPROFITABLE, detail):
            log.info("request %s unprofitable: %s", key, detail)

    def hold(self, key: str) -> None:
        self._held[key] = time.monotonic() + GONE_HOLD_SECONDS

    def release(self, keys: list[str]) -> None:
        """Responses whose requests are not open on-chain: back to `signed`, not sent again for a while."""
        for key in keys:
            self.hold(key)
        self.requeue(keys)

    def requeue(self, keys: list[str]) -> None:
        """Responses whose transaction failed go back to `signed`; the pipeline submits them again."""
        self._carried.difference_update(keys)
        self.requests.requeue_submitted(keys)

    def struck(self, key: str) -> bool:
        """Whether a transaction carrying this response was refused for good (it now goes alone)."""
        return self._strikes.get(key, 0) > 0

    def strike(self, tx: StoredTx) -> None:
        """The node refused `tx` for a reason no price fixes. Its responses are sent again, each alone;
        one refused alone is given up (stored expired with the reason), so nothing loops."""
        for key in tx.request_keys:
            self._strikes[key] = self._strikes.get(key, 0) + 1
            if self._strikes[key] >= 2 and len(tx.request_keys) == 1:
                self.give_up(key, R.EXPIRED, "the node refuses every transaction carrying this response; check "
                                             "the node's limits (transaction size, gas) and its log")
