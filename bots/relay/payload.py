"""What a receiver is sent for one item the client gives: its webhook id and its JSON body.

The id is `msg_` and 32 hex digits of sha256 over the settlement's `event_id` (chain, oracle, request id,
event), the kind (settled or retracted) and the hash of the block it was given in. The same delivery
keeps its id across retries, restarts and a repeat of the item after a crash, so a receiver drops a
repeat by id; a settlement given again from another block after a reorg retraction gets a new id, so a
receiver that drops repeats still sees it come back.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass

from oracle.client import Retracted, Settled

TYPES = {"settled": "oracle.result.settled", "retracted": "oracle.result.retracted"}


@dataclass(frozen=True)
class Payload:
    webhook_id: str
    event_id: str
    kind: str  # settled | retracted
    settled: Settled  # what was settled, or what is retracted
    body: bytes  # sent as it is on every attempt


def webhook_id(settled: Settled, kind: str) -> str:
    digest = hashlib.sha256(f"{settled.event_id}|{kind}|0x{settled.block_hash.hex()}".encode()).hexdigest()
    return "msg_" + digest[:32]


def payload_of(item: Settled | Retracted, now: datetime.datetime) -> Payload:
    """The message for `item`; `now` (UTC) is the body's timestamp: when the relay took it."""
    kind, settled = ("retracted", item.settled) if isinstance(item, Retracted) else ("settled", item)
    body = {"type": TYPES[kind], "timestamp": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": settled.to_json()}
    return Payload(webhook_id(settled, kind), settled.event_id, kind, settled,
                   json.dumps(body, separators=(",", ":")).encode())
