"""How much each part does: the full run (`make soak`) and the short one CI runs on every change."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    kill_requests: int  # requests of mixed result types sent while the daemon is killed
    kills: int  # SIGKILLs, start-up included
    kill_seconds: float  # over how long the requests are spread
    reorgs: int  # per confirmation depth (0 and 2)
    deep_reorgs: int  # of them, at least this many deeper than the depth (per depth)
    fault_seconds: float  # requests flowing through the fault proxy
    fault_kills: int  # restarts under faults, so the backfill meets refused and timed-out ranges
    base_fee_seconds: float  # requests flowing around a base-fee jump
    hostile_rounds: int  # each sends every kind of hostile request once
    hostile_402_rounds: int  # each asks every hostile 402 server once
    unprofitable_expiry: int  # seconds before a request its fee cannot pay for expires
    settle_timeout: float  # the longest wait for a world to settle before counting


FULL = Profile("full", kill_requests=1_000, kills=50, kill_seconds=240, reorgs=10, deep_reorgs=3,
               fault_seconds=90, fault_kills=5, base_fee_seconds=40, hostile_rounds=5, hostile_402_rounds=3,
               unprofitable_expiry=40, settle_timeout=240)
CI = Profile("ci", kill_requests=60, kills=6, kill_seconds=20, reorgs=3, deep_reorgs=1, fault_seconds=15,
             fault_kills=1, base_fee_seconds=10, hostile_rounds=1, hostile_402_rounds=1, unprofitable_expiry=20,
             settle_timeout=90)
PROFILES = {p.name: p for p in (FULL, CI)}
