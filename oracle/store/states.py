"""The three state machines the store keeps — a request's, a transaction's, a payment's — each an enum
with one table of allowed transitions. Every state write goes through `Db.transition`, which refuses
what its machine's table does not allow.

With `ORACLE_TRANSITION_LOG` set to a file, each transition a process takes is appended to it once
(the tests check that every allowed transition is taken by some test)."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S", bound=enum.StrEnum)


class RequestState(enum.StrEnum):
    """A request's place in its lifecycle. Terminal states end with the request (a reorg can reopen them)."""

    SEEN = "seen"  # in a block not yet deep enough
    CONFIRMED = "confirmed"  # deep enough to act on
    ACCEPTED = "accepted"  # passed the checks; to be answered
    REFUSED = "refused"  # failed a check; answered on-chain with a failure status
    ANSWERED = "answered"  # the router's answer (or failure) is stored
    SIGNED = "signed"  # the response and its signature are stored
    SUBMITTED = "submitted"  # a fulfillment transaction carries it
    FULFILLED = "fulfilled"  # fulfilled on-chain (by us or anyone)
    EXPIRED = "expired"  # the deadline passed, or the chain refuses its response for good
    UNPROFITABLE = "unprofitable"  # its fee does not cover the gas of answering: left for its requester to reclaim
    ROLLED_BACK = "rolled_back"  # the block that held it was reorganised away
    CANCELLED = "cancelled"  # the requester took the refund


class TxState(enum.StrEnum):
    """One signed transaction of ours."""

    PENDING = "pending"  # sent (or about to be); the node may hold it
    REPLACED = "replaced"  # a newer one at the same nonce was signed; this one may still be mined
    DROPPED = "dropped"  # another transaction took its nonce: it can never be mined
    MINED = "mined"  # in a block, not yet at the confirmation depth
    CONFIRMED = "confirmed"  # at the confirmation depth: final


class PaymentState(enum.StrEnum):
    """One x402 payment (a row of the ledger)."""

    RESERVED = "reserved"  # counted against the budgets; nothing signed yet
    SIGNED = "signed"  # the authorization is signed and on record; not sent yet
    SENT = "sent"  # sent with the paid request; no answer yet
    SETTLED = "settled"  # the provider (or the chain) says it was settled
    UNKNOWN = "unknown"  # sent, and whether it moved money is not known: the reconciler finds out
    REJECTED = "rejected"  # a 402 we refused to pay: nothing was signed
    EXPIRED = "expired"  # known never to move money (never signed, or its authorization ran out unused)


class SalePayment(enum.StrEnum):
    """A payment an agent made to the gateway for one call (keyed by its EIP-3009 nonce)."""

    VERIFIED = "verified"  # the facilitator verified it; the model is being asked; its amount is reserved
    ANSWERED = "answered"  # the call was answered: its answer is kept, its settlement is under way
    SETTLED = "settled"  # the facilitator settled it on-chain
    FAILED = "failed"  # it did not settle: the payer is refused for a while
    RELEASED = "released"  # the call failed: nothing settled; its payment may be sent again for the same call


class ForbiddenTransition(Exception):
    """A state write its machine's table does not allow: a bug in the caller, never the chain's doing."""


@dataclass(frozen=True)
class Machine(Generic[S]):
    name: str
    states: type[S]
    initial: frozenset[S]
    edges: frozenset[tuple[S, S]]
    terminal: frozenset[S] = frozenset()

    def check(self, from_states: Iterable[S], to: S) -> None:
        for state in from_states:
            if state != to and (state, to) not in self.edges:
                raise ForbiddenTransition(f"{self.name}: {state} -> {to} is not a transition of the {self.name} "
                                          f"state machine")

    def check_initial(self, state: S) -> None:
        if state not in self.initial:
            raise ForbiddenTransition(f"{self.name}: a new row cannot start in {state}")


def _edges(*groups: tuple[Iterable[S], Iterable[S]]) -> frozenset[tuple[S, S]]:
    return frozenset((a, b) for froms, tos in groups for a in froms for b in tos if a != b)


R = RequestState
_OPEN = (R.SEEN, R.CONFIRMED, R.ACCEPTED, R.REFUSED, R.ANSWERED, R.SIGNED, R.SUBMITTED)

REQUEST = Machine("request", RequestState, frozenset({R.SEEN, R.CONFIRMED}), _edges(
    ([R.SEEN], [R.CONFIRMED]),
    ([R.CONFIRMED], [R.ACCEPTED, R.REFUSED]),
    ([R.ACCEPTED, R.REFUSED], [R.ANSWERED]),
    ([R.ANSWERED], [R.SIGNED]),
    ([R.CONFIRMED], [R.SIGNED]),  # re-included after a reorg with the same content: its signed answer stands
    ([R.SIGNED], [R.SUBMITTED]),
    ([R.SUBMITTED], [R.SIGNED]),  # its transaction failed or was dropped: sent again
    # its deadline passed before a model was asked or before it was sent, or the chain refuses its response
    ([R.CONFIRMED, R.ACCEPTED, R.SIGNED, R.SUBMITTED], [R.EXPIRED]),
    ([R.SIGNED, R.SUBMITTED], [R.UNPROFITABLE]),
    ([R.UNPROFITABLE], [R.SIGNED]),  # an operator's retry while its deadline allows: the fee is checked again
    # the chain is the truth: a settlement seen on-chain (by anyone) wins from any other state
    ([*_OPEN, R.EXPIRED, R.UNPROFITABLE, R.ROLLED_BACK], [R.FULFILLED, R.CANCELLED]),
    # a reorg: the block holding it is gone (a settled one only when another request took its id)
    ([*_OPEN, R.UNPROFITABLE, R.FULFILLED, R.EXPIRED, R.CANCELLED], [R.ROLLED_BACK]),
    ([R.ROLLED_BACK], [R.SEEN, R.CONFIRMED]),  # included again in another block
    ([R.FULFILLED, R.CANCELLED], [R.SIGNED, R.CONFIRMED]),  # its settlement was reorganised away
    ([R.FULFILLED], [R.SUBMITTED]),  # our transaction that settled it was reorganised away
    # a reorg replaced the block that settled it with one that settles it the other way
    ([R.FULFILLED], [R.CANCELLED]), ([R.CANCELLED], [R.FULFILLED]),
), terminal=frozenset({R.FULFILLED, R.EXPIRED, R.ROLLED_BACK, R.CANCELLED, R.UNPROFITABLE}))

T = TxState
TX = Machine("transaction", TxState, frozenset({T.PENDING}), _edges(
    ([T.PENDING], [T.REPLACED]),
    ([T.PENDING, T.REPLACED], [T.MINED, T.DROPPED]),
    ([T.DROPPED], [T.MINED]),  # given up, then mined after all: the chain's receipt decides
    ([T.MINED], [T.CONFIRMED]),
    ([T.MINED, T.CONFIRMED], [T.PENDING]),  # its block was reorganised away
))

P = PaymentState
PAYMENT = Machine("payment", PaymentState, frozenset({P.RESERVED, P.REJECTED}), _edges(
    ([P.RESERVED], [P.SIGNED]),
    ([P.SIGNED], [P.SENT]),
    ([P.SENT], [P.SETTLED, P.UNKNOWN]),
    ([P.UNKNOWN], [P.SETTLED]),
    ([P.SETTLED], [P.UNKNOWN]),  # its settlement was reorganised away
    ([P.RESERVED, P.SIGNED, P.SENT, P.UNKNOWN], [P.EXPIRED]),
), terminal=frozenset({P.REJECTED, P.EXPIRED}))

G = SalePayment
SALE = Machine("sale", SalePayment, frozenset({G.VERIFIED}), _edges(
    ([G.VERIFIED], [G.ANSWERED, G.RELEASED]),
    ([G.ANSWERED], [G.SETTLED, G.FAILED]),
    ([G.RELEASED], [G.VERIFIED]),  # its payment sent again for the same call
), terminal=frozenset({G.SETTLED, G.FAILED}))

MACHINES: tuple[Machine[Any], ...] = (REQUEST, TX, PAYMENT, SALE)

# Payments that count against budgets: all but those known not to have moved money.
PAYMENT_SPENDING = (P.RESERVED, P.SIGNED, P.SENT, P.SETTLED, P.UNKNOWN)
PAYMENT_UNRESOLVED = (P.RESERVED, P.SIGNED, P.SENT, P.UNKNOWN)


# ---------------------------------------------------------------- which transitions were taken

TRANSITION_LOG = "ORACLE_TRANSITION_LOG"
_logged: set[tuple[str, str, str]] = set()


def taken(machine: Machine[S], frm: str, to: str) -> None:
    """Note a transition taken (only when ORACLE_TRANSITION_LOG names a file; once per process)."""
    path = os.environ.get(TRANSITION_LOG)
    if not path or frm == to or (machine.name, frm, to) in _logged:
        return
    _logged.add((machine.name, frm, to))
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{machine.name} {frm} {to}\n")


def untaken(lines: Iterable[str]) -> list[str]:
    """The allowed transitions absent from a transition log's lines, as "machine: from -> to"."""
    seen = {tuple(line.split()) for line in lines if line.strip()}
    return sorted(f"{m.name}: {a} -> {b}" for m in MACHINES for a, b in m.edges if (m.name, a, b) not in seen)


def describe(machine: Machine[S]) -> str:
    """The machine as the README shows it: each state and where it may go (tests/store keeps them equal)."""
    lines = [f"{machine.name}: starts in {', '.join(s for s in machine.states if s in machine.initial)}"]
    width = max(len(s) for s in machine.states)
    for state in machine.states:
        targets = [b for b in machine.states if (state, b) in machine.edges]
        lines.append(f"  {state:<{width}} -> {', '.join(targets) if targets else '(final)'}")
    return "\n".join(lines)
