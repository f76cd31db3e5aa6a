"""What following the oracle gives: a request's settlement (`Settled`), a retraction of one a reorg
removed (`Retracted`), and the filter that picks them (`ResultFilter`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from oracle.protocol import ReasonCode, ResultType


@dataclass(frozen=True)
class ResultFilter:
    """Which settlements to give; an empty set lets every value through. Addresses in any case."""

    consumers: frozenset[str] = frozenset()  # callback addresses
    requesters: frozenset[str] = frozenset()
    request_ids: frozenset[bytes] = frozenset()
    result_types: frozenset[ResultType] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "consumers", frozenset(a.lower() for a in self.consumers))
        object.__setattr__(self, "requesters", frozenset(a.lower() for a in self.requesters))

    def admits(self, s: Settled) -> bool:
        return ((not self.consumers or s.consumer.lower() in self.consumers)
                and (not self.requesters or s.requester.lower() in self.requesters)
                and (not self.request_ids or s.request_id in self.request_ids)
                and (not self.result_types or s.result_type in {t.name.lower() for t in self.result_types}))


@dataclass(frozen=True)
class Settled:
    """How one request settled, as the chain says at the block given."""

    chain_id: int
    oracle: str
    request_id: bytes
    event: str  # fulfilled | cancelled | expired
    status: str  # success | failure (fulfilled), cancelled, expired
    reason: ReasonCode | int
    result_type: str  # bool, uint, int, choice, text, json, abi ("" when its request was not found)
    value: Any  # the decoded result of a success whose bytes were found; None otherwise
    result: bytes | None  # the ABI-encoded result
    model_used: bytes | None
    receipt_hash: bytes | None
    consumer: str  # the request's callback address
    requester: str
    block_number: int
    block_hash: bytes
    transaction: bytes | None  # the fulfilment's or the cancel's
    note: str = ""  # why the value is missing, when it is

    @property
    def event_id(self) -> str:
        """Stable per (chain, oracle, request id, event): the same after a restart or a re-inclusion."""
        return f"{self.chain_id}:{self.oracle.lower()}:0x{self.request_id.hex()}:{self.event}"

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("request_id", "result", "model_used", "receipt_hash", "block_hash", "transaction"):
            doc[key] = None if doc[key] is None else "0x" + bytes(doc[key]).hex()
        doc["reason"] = int(self.reason)
        doc["value"] = _jsonable(self.value)
        doc["event_id"] = self.event_id
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Settled:
        def b(key: str) -> bytes | None:
            return None if doc[key] is None else bytes.fromhex(doc[key][2:])

        return cls(int(doc["chain_id"]), doc["oracle"], b("request_id") or b"", doc["event"], doc["status"],
                   reason_of(int(doc["reason"])), doc["result_type"], doc["value"], b("result"), b("model_used"),
                   b("receipt_hash"), doc["consumer"], doc["requester"], int(doc["block_number"]),
                   b("block_hash") or b"", b("transaction"), doc["note"])


@dataclass(frozen=True)
class Retracted:
    """A settlement given before whose block a reorg removed."""

    settled: Settled

    @property
    def event_id(self) -> str:
        return self.settled.event_id


def reason_of(code: int) -> ReasonCode | int:
    """(a code newer than this client stays a number; the receipt names it)"""
    return ReasonCode(code) if code in ReasonCode._value2member_map_ else code


def _jsonable(value: Any) -> Any:
    """A decoded value as JSON keeps it: bytes as 0x-hex, tuples as lists (a value read back from a cursor
    is this form)."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
