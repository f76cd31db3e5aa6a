"""The payment ledger of a program that pays on its own account (an agent paying the oracle's gateway):
a store file that only its `payments` are written to, held by one process at a time.

    ledger = Ledger.open("agent-payments.sqlite")
    paying = PayingClient(session, wallet, settings, ledger.payments)
    ...
    ledger.close()

It is the daemon's store format, so the same budgets, payment states and reconciler apply. One process
per file, as for the daemon's store (its advisory lock): the ledger is written through one connection,
one transaction per event-loop pass.
"""

from __future__ import annotations

from pathlib import Path

from oracle.store import Payments, Store, StoreInUse, StoreLock


class LedgerInUse(RuntimeError):
    """Another process holds this ledger; the message names its pid."""


class Ledger:
    def __init__(self, store: Store, lock: StoreLock) -> None:
        self._store = store
        self._lock = lock

    @classmethod
    def open(cls, path: Path | str) -> Ledger:
        """Open (creating it if missing) the ledger at `path` and hold it until `close()`."""
        path = Path(path)
        try:
            lock = StoreLock(path).acquire()
        except StoreInUse:
            holder = _holder(path)
            raise LedgerInUse(f"the payment ledger {path} is in use by another process (pid {holder}): one program "
                              f"per ledger file; stop that one or give this one a ledger of its own") from None
        try:
            store = Store.open(path)
        except BaseException:
            lock.release()
            raise
        return cls(store, lock)

    @property
    def payments(self) -> Payments:
        return self._store.payments

    def close(self) -> None:
        try:
            self._store.close()
        finally:
            self._lock.release()


def _holder(path: Path) -> str:
    try:
        return Path(f"{path}.lock").read_text().strip() or "unknown"
    except OSError:
        return "unknown"
