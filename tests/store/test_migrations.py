"""Each migration, applied to the schema before it holding data: nothing already stored is lost or
changed, and what it adds has its documented default."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from oracle.store import Store
from oracle.store.migrations import MIGRATIONS, migrate

SAMPLE = {"INTEGER": 7, "TEXT": "7", "BLOB": b"\x07" * 32, "REAL": 7.5, "FLOAT": 7.5, "": "7"}


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    return {r["name"]: r["type"].upper() for r in conn.execute(f"PRAGMA table_info({table})")}


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r["name"] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                                            "'sqlite_%' AND name != 'migrations' ORDER BY name")]


def _fill(conn: sqlite3.Connection, n: int) -> dict[str, dict[str, Any]]:
    """One row in every table, each column holding a value of its type (distinct per `n`)."""
    rows = {}
    for table in _tables(conn):
        values = {c: (SAMPLE[t] if t != "INTEGER" else n) for c, t in _columns(conn, table).items() if c != "id"}
        if "key" in values:
            values["key"] = f"row-{n}"
        conn.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                     list(values.values()))
        rows[table] = values
    return rows


@pytest.mark.parametrize("version", range(2, len(MIGRATIONS) + 1))
def test_a_migration_keeps_the_data_before_it(tmp_path: Path, version: int) -> None:
    conn = _connect(tmp_path / "old.sqlite")
    migrate(conn, upto=version - 1)
    before = {t: _columns(conn, t) for t in _tables(conn)}
    stored = _fill(conn, 1)
    migrate(conn, upto=version)
    for table, values in stored.items():
        row = conn.execute(f"SELECT * FROM {table}").fetchone()
        assert row is not None, f"migration {version} lost the row of {table}"
        assert {c: row[c] for c in values} == values, f"migration {version} changed {table}"
        defaults = {r["name"]: r["dflt_value"] for r in conn.execute(f"PRAGMA table_info({table})")}
        for added in set(_columns(conn, table)) - set(before[table]):
            default = defaults[added]  # an old row reads a new column as its declared default
            expected = conn.execute(f"SELECT {default}").fetchone()[0] if default is not None else None
            assert row[added] == expected, f"migration {version}: {table}.{added} is {row[added]!r} on an old row"
    assert [r["version"] for r in conn.execute("SELECT version FROM migrations")] == list(range(1, version + 1))
    conn.close()


def test_an_old_store_opens_and_reads_through_the_areas(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = _connect(path)
    migrate(conn, upto=1)
    _fill(conn, 1)
    conn.close()
    store = Store.open(path)  # applies the rest
    try:
        found = store.requests.get("row-1")
        assert found is not None and found.fee == 7 and found.state == "7"
        assert store.txs.gas_spent(1, "7") == 7
        assert store.blocks.cursor(1, "7") == (1, b"\x07" * 32)
    finally:
        store.close()


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "oracle.sqlite"
    Store.open(path).close()
    conn = _connect(path)
    versions = conn.execute("SELECT COUNT(*) FROM migrations").fetchone()[0]
    migrate(conn)
    assert conn.execute("SELECT COUNT(*) FROM migrations").fetchone()[0] == versions == len(MIGRATIONS)
    conn.close()
