"""Making the ledger true: payments whose fate is unknown are resolved from the token's own records.

Run periodically (an apscheduler job in the daemon). A payment is looked at when it is `unknown`, or
still `signed`/`sent` long after any call could be in flight (the daemon stopped mid-payment):
- reserved but never signed: expired at once;
- the token says the authorization was used (`authorizationState(payer, nonce)`): settled, with the
  transaction from its `AuthorizationUsed` log; if no answer was delivered for it, it stays flagged
  "paid without delivery";
- not used and its `validBefore` has passed: expired, and it stops counting against the budgets;
- not used yet but still valid: left for the next pass (a facilitator may still settle it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from eth_abi import encode
from eth_utils import keccak

from oracle.config import X402Settings
from oracle.store import Payment, Store

log = logging.getLogger(__name__)

_AUTHORIZATION_STATE = keccak(text="authorizationState(address,bytes32)")[:4]
_AUTHORIZATION_USED = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
PAID_WITHOUT_DELIVERY = "paid without delivery"
# Seconds past validBefore before an unused authorization counts as expired: the token judges validity by
# block time, which may lag this clock, and a settlement may still sit in the pool.
EXPIRY_MARGIN = 120


@dataclass
class ReconcileReport:
    settled: int = 0
    expired: int = 0
    pending: int = 0
    flagged: list[int] = field(default_factory=list)  # payment ids paid without delivery


class Reconciler:
    def __init__(self, store: Store, settings: X402Settings, session: aiohttp.ClientSession,
                 stale_after: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.rpc = {n.network: n.rpc_url for n in settings.networks}
        self.session = session
        self.stale_after = settings.stale_after if stale_after is None else stale_after
        self.clock = clock

    async def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock()
        for p in self.store.payments(("unknown", "signed", "sent", "reserved")):
            if p.state != "unknown" and now - p.updated_at < self.stale_after:
                continue  # a call may still be in flight
            if not p.nonce:  # reserved, never signed (the daemon stopped in between): nothing can move
                self.store.update_payment(p.id, state="expired", error="never signed")
                report.expired += 1
                continue
            if p.network not in self.rpc:
                report.pending += 1
                continue
            outcome = await self.resolve(p, now)
            if outcome == "settled":
                report.settled += 1
                if not p.delivered:
                    report.flagged.append(p.id)
            elif outcome == "expired":
                report.expired += 1
            else:
                report.pending += 1
        await self.store.commit()
        return report

    async def resolve(self, p: Payment, now: float | None = None) -> str:
        """Settle or expire one signed payment from the token's records; the state it ends in."""
        now = self.clock() if now is None else now
        try:
            used = await self._used(p)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("payment %d: cannot read the token: %s", p.id, exc)
            return p.state
        if used:
            tx = p.tx_hash or await self._transaction(p)
            self.store.update_payment(p.id, state="settled", tx_hash=tx,
                                      error="" if p.delivered else PAID_WITHOUT_DELIVERY)
            if not p.delivered:
                log.warning("payment %d (%s) was paid without delivery: %s", p.id, p.request_key, tx)
            return "settled"
        if now > p.valid_before + EXPIRY_MARGIN:
            self.store.update_payment(p.id, state="expired")
            return "expired"
        return p.state

    async def _rpc(self, network: str, method: str, params: list[Any]) -> Any:
        async with self.session.post(self.rpc[network], json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                              "params": params},
                                     timeout=aiohttp.ClientTimeout(total=15)) as resp:
            doc = await resp.json(content_type=None)
        if not isinstance(doc, dict) or "result" not in doc:
            raise ValueError(f"{method}: {str(doc)[:200]}")
        return doc["result"]

    async def _used(self, p: Payment) -> bool:
        data = _AUTHORIZATION_STATE + encode(["address", "bytes32"], [p.payer, bytes.fromhex(p.nonce[2:])])
        result = await self._rpc(p.network, "eth_call", [{"to": p.asset, "data": "0x" + data.hex()}, "latest"])
        return int(result, 16) != 0

    async def _transaction(self, p: Payment) -> str:
        topics = [_AUTHORIZATION_USED, "0x" + encode(["address"], [p.payer]).hex(), p.nonce]
        logs = await self._rpc(p.network, "eth_getLogs", [{"address": p.asset, "topics": topics,
                                                           "fromBlock": "0x0", "toBlock": "latest"}])
        return str(logs[0]["transactionHash"]) if logs else ""
