"""Store tests: a real SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.store import RequestState, Store, StoredRequest, request_key

ORACLE = "0x" + "0a" * 20


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "oracle.sqlite")
    yield s
    s.close()


def a_request(n: int = 1, *, block: int = 10, state: RequestState = RequestState.CONFIRMED,
              params: bytes = b"params", block_hash: bytes = b"\x01" * 32) -> StoredRequest:
    request_id = n.to_bytes(32, "big")
    return StoredRequest(request_key(31337, ORACLE, request_id), 31337, ORACLE, request_id, block, block_hash, 0,
                         "0x" + "22" * 20, n, 10**15, params, 2**40, state, 0, "", 0, None, None, None, None, None)


def put_in_state(store: Store, key: str, state: RequestState, **fields: object) -> None:
    """Place a row in `state` directly, as a crash or a race could leave it (a test's set-up, not a move)."""
    names = ["state", *fields]
    store.db.write(f"UPDATE requests SET {', '.join(f'{n}=?' for n in names)} WHERE key=?",
                   (state, *fields.values(), key))
