"""Making the ledger true: payments whose fate is unknown are resolved from the token's own records, and
settlements are watched until they are final.

Run periodically (an apscheduler job in the daemon). A payment is looked at when it is `unknown`, or
still `signed`/`sent` long after any call could be in flight (the daemon stopped mid-payment):
- reserved but never signed: expired at once;
- the token says the authorization was used (`authorizationState(payer, nonce)`): settled, with the
  transaction and block from its `AuthorizationUsed` log; if no answer was delivered for it, it stays
  flagged "paid without delivery";
- not used and its `validBefore` has passed: expired, and it stops counting against the budgets;
- not used yet but still valid: left for the next pass (a facilitator may still settle it).

The payment network reorganises too: a settled payment is final only once its settlement is the
network's `confirmations` blocks deep. Until then each pass checks it again; a settlement no longer on
the chain (reorganised away, or never there: a provider's claim) makes the payment unknown again.

Each payment is handled on its own: a node error or odd data on one is logged and left for the next
pass, never stopping the others. Log queries start at the payment's own block (a head seen before it
was signed, less the confirmation depth) and go in bounded ranges, halved when the node refuses.
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
from oracle.store import Payment, Payments, PaymentState
from oracle.x402.network import NetworkError, PaymentNetworks

log = logging.getLogger(__name__)

P = PaymentState
_AUTHORIZATION_USED = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
PAID_WITHOUT_DELIVERY = "paid without delivery"
NOT_ON_CHAIN = "its settlement is not on the chain (reorganised away?): unresolved again"
# Seconds past validBefore before an unused authorization counts as expired: the token judges validity by
# block time, which may lag this clock, and a settlement may still sit in the pool.
EXPIRY_MARGIN = 120


@dataclass
class ReconcileReport:
    settled: int = 0
    expired: int = 0
    pending: int = 0
    final: int = 0  # settlements that reached the confirmation depth
    reorganised: int = 0  # settlements no longer on the chain: unknown again
    errors: int = 0  # payments left for the next pass because the node could not answer
    flagged: list[int] = field(default_factory=list)  # payment ids paid without delivery


class Reconciler:
    def __init__(self, payments: Payments, settings: X402Settings, session: aiohttp.ClientSession,
                 stale_after: float | None = None, clock: Callable[[], float] = time.time,
                 networks: PaymentNetworks | None = None) -> None:
        self.payments = payments
        self.confirmations = {n.network: n.confirmations for n in settings.networks}
        self.networks = networks if networks is not None else PaymentNetworks(session, settings)
        self.stale_after = settings.stale_after if stale_after is None else stale_after
        self.clock = clock

    async def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock()
        for network in self.confirmations:
            try:  # keeps the head the paying client records as each new payment's from_block fresh
                await self.networks.head(network)
            except NetworkError as exc:
                log.info("%s: head not read this pass: %s", network, exc)
        for p in self.payments.payments((P.UNKNOWN, P.SIGNED, P.SENT, P.RESERVED)):
            if p.state != P.UNKNOWN and now - p.updated_at < self.stale_after:
                continue  # a call may still be in flight
            if not p.nonce:  # reserved, never signed (the daemon stopped in between): nothing can move
                self.payments.transition(p.id, [P.RESERVED], P.EXPIRED, error="never signed")
                report.expired += 1
                continue
            if p.network not in self.confirmations:
                report.pending += 1
                continue
            try:
                outcome = await self._resolve(p, now)
            except Exception as exc:  # one payment's trouble never stops the others
                log.warning("payment %d: left for the next pass: %s", p.id, exc)
                report.errors += 1
                report.pending += 1
                continue
            if outcome == "settled":
                report.settled += 1
                if not p.delivered:
                    report.flagged.append(p.id)
            elif outcome == "expired":
                report.expired += 1
            else:
                report.pending += 1
        for p in self.payments.settlements_to_confirm():
            if p.network not in self.confirmations:
                continue
            try:
                outcome = await self._confirm(p)
            except Exception as exc:
                log.warning("payment %d: settlement not checked, left for the next pass: %s", p.id, exc)
                report.errors += 1
                continue
            if outcome == "final":
                report.final += 1
            elif outcome == "reorganised":
                report.reorganised += 1
        await self.payments.commit()
        return report

    async def resolve(self, p: Payment, now: float | None = None) -> str:
        """Settle or expire one signed payment from the token's records; the state it ends in (its
        current one if the node cannot say now)."""
        try:
            return await self._resolve(p, self.clock() if now is None else now)
        except (NetworkError, ValueError, KeyError, TypeError) as exc:
            log.warning("payment %d: cannot read the token: %s", p.id, exc)
            return p.state

    async def _resolve(self, p: Payment, now: float) -> str:
        if await self.networks.authorization_used(p.network, p.asset, p.payer, p.nonce):
            tx, block = await self._settlement(p)
            if not self.payments.transition(p.id, [P.SENT, P.UNKNOWN, P.SETTLED], P.SETTLED,
                                            tx_hash=tx or p.tx_hash, settled_block=block, final=0,
                                            error="" if p.delivered else PAID_WITHOUT_DELIVERY):
                # (only a payment whose signature was sent can be used: one never sent is left to expire)
                log.error("payment %d (%s) in state %s is used on-chain", p.id, p.request_key, p.state)
                return p.state
            if not p.delivered:
                log.warning("payment %d (%s) was paid without delivery: %s", p.id, p.request_key, tx)
            return "settled"
        if now > p.valid_before + EXPIRY_MARGIN:
            self.payments.transition(p.id, [P.SIGNED, P.SENT, P.UNKNOWN], P.EXPIRED)
            return "expired"
        return p.state

    async def _confirm(self, p: Payment) -> str:
        """Re-check a settlement that is not final yet: final at the confirmation depth, unknown again if
        the chain no longer holds it."""
        head = await self.networks.head(p.network)
        if not await self.networks.authorization_used(p.network, p.asset, p.payer, p.nonce):
            self.payments.transition(p.id, [P.SETTLED], P.UNKNOWN, settled_block=0, final=0, error=NOT_ON_CHAIN)
            log.warning("payment %d (%s): settlement %s is no longer on the chain", p.id, p.request_key, p.tx_hash)
            return "reorganised"
        tx, block = await self._settlement(p, head)
        if not block:
            return "pending"  # used, but its log is not found yet (a node behind its head): next pass
        final = block <= head - self.confirmations[p.network]
        self.payments.update(p.id, tx_hash=tx, settled_block=block, final=int(final))
        return "final" if final else "pending"

    async def _settlement(self, p: Payment, head: int | None = None) -> tuple[str, int]:
        """(transaction, block) of the payment's `AuthorizationUsed` log on the chain as it is now, or
        ("", 0) if not found. The transaction the provider named is tried first (one receipt), then logs
        from the payment's own block."""
        if p.tx_hash:
            receipt = await self.networks.receipt(p.network, p.tx_hash)
            if receipt is not None and _int(receipt.get("status")) == 1:
                for entry in receipt.get("logs") or []:
                    if self._is_ours(p, entry):
                        return str(receipt["transactionHash"]), _int(receipt.get("blockNumber"))
        topics = [_AUTHORIZATION_USED, "0x" + encode(["address"], [p.payer]).hex(), p.nonce]
        start = max(0, p.from_block - self.confirmations[p.network])
        for entry in await self.networks.logs(p.network, p.asset, topics, start, head):
            if self._is_ours(p, entry) and not entry.get("removed"):
                return str(entry["transactionHash"]), _int(entry.get("blockNumber"))
        return "", 0

    @staticmethod
    def _is_ours(p: Payment, entry: Any) -> bool:
        topics = entry.get("topics") if isinstance(entry, dict) else None
        return (isinstance(topics, list) and len(topics) == 3 and str(topics[0]).lower() == _AUTHORIZATION_USED
                and str(topics[2]).lower() == p.nonce.lower()
                and str(entry.get("address", "")).lower() == p.asset.lower())


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    return 0
