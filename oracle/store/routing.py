"""The router's records: each model call (attempt) with what it cost, the raw bodies the models sent,
the decision each request was routed by, and every catalog a decision named."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from oracle.store.db import Area


@dataclass
class Attempt:
    request_key: str
    attempt_id: int
    deployment: str
    state: str  # started | done
    outcome: str  # ok | truncated | refused | filtered | malformed | error | ""
    latency_ms: float
    usage: dict[str, int]
    cost: int
    raw_sha256: str
    answer: str  # the JSON text the model gave, or ""
    error: str
    kind: str = ""  # for outcome "error": transient | context_length | content_policy | unavailable | fatal
    http_status: int = 0


class Routing(Area):
    def start_attempt(self, request_key: str, attempt_id: int, deployment: str) -> None:
        self._db.write("INSERT INTO attempts (request_key, attempt_id, deployment, state, outcome, started_at, "
                       "latency_ms, usage, cost, raw_sha256, answer, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                       "ON CONFLICT(request_key, attempt_id) DO UPDATE SET deployment=excluded.deployment, "
                       "state=excluded.state, outcome='', started_at=excluded.started_at "
                       "WHERE attempts.deployment != excluded.deployment",
                       (request_key, attempt_id, deployment, "started", "", time.time(), 0.0, "{}", 0, "", "", ""))

    def finish_attempt(self, a: Attempt, raw_body: bytes | None) -> None:
        if raw_body is not None and a.raw_sha256:
            self._db.write("INSERT INTO raw_responses (sha256, body) VALUES (?,?) ON CONFLICT DO NOTHING",
                           (a.raw_sha256, raw_body))
        self._db.write("UPDATE attempts SET state=?, outcome=?, latency_ms=?, usage=?, cost=?, raw_sha256=?, "
                       "answer=?, error=?, kind=?, http_status=? WHERE request_key=? AND attempt_id=?",
                       ("done", a.outcome, a.latency_ms, json.dumps(a.usage, sort_keys=True), a.cost, a.raw_sha256,
                        a.answer, a.error, a.kind, a.http_status, a.request_key, a.attempt_id))

    def attempts(self, request_key: str) -> list[Attempt]:
        rows = self._db.all("SELECT * FROM attempts WHERE request_key=? ORDER BY attempt_id", (request_key,))
        return [Attempt(r["request_key"], r["attempt_id"], r["deployment"], r["state"], r["outcome"],
                        r["latency_ms"], json.loads(r["usage"]), r["cost"], r["raw_sha256"], r["answer"],
                        r["error"], r["kind"], r["http_status"]) for r in rows]

    def forget(self, request_key: str) -> None:
        """Another request took this one's id (a reorg): none of the old one's calls or its decision count."""
        self._db.write("DELETE FROM attempts WHERE request_key=?", (request_key,))
        self._db.write("DELETE FROM route_decisions WHERE request_key=?", (request_key,))

    def raw_response(self, sha256: str) -> bytes | None:
        row = self._db.one("SELECT body FROM raw_responses WHERE sha256=?", (sha256,))
        return bytes(row["body"]) if row is not None else None

    def save_route_decision(self, request_key: str, catalog_version: str, body: str) -> None:
        self._db.write("INSERT INTO route_decisions (request_key, catalog_version, body) VALUES (?,?,?) "
                       "ON CONFLICT(request_key) DO UPDATE SET catalog_version=excluded.catalog_version, "
                       "body=excluded.body", (request_key, catalog_version, body))

    def route_decision(self, request_key: str) -> tuple[str, str] | None:
        """(catalog version, decision record JSON) a request was routed by, if it was."""
        row = self._db.one("SELECT catalog_version, body FROM route_decisions WHERE request_key=?", (request_key,))
        return (row["catalog_version"], row["body"]) if row is not None else None

    def save_catalog(self, version: str, body: str) -> None:
        self._db.write("INSERT INTO catalogs (version, body, first_seen) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                       (version, body, time.time()))

    def catalog(self, version: str) -> str | None:
        row = self._db.one("SELECT body FROM catalogs WHERE version=?", (version,))
        return str(row["body"]) if row is not None else None
