"""The soak's parts. Each builds its own world, does its damage while requests flow, lets the world
settle and counts from outside (`soak.audit`). Each returns what it did and what it found."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oracle.devnet.fault_proxy import FaultKnobs
from oracle.devnet.harness import DEV_MODEL, PAID_MODEL
from soak.audit import Counts, Reorg, audit
from soak.flow import Flow, settle
from soak.hostile402 import KINDS as HOSTILE_402
from soak.hostile_requests import REFUSED_BY_CONTRACT, UNPROFITABLE, HostileSender
from soak.profile import Profile
from soak.world import BLOCK_TIME, MIXED, World, WorldOptions, hostile_model

GWEI = 10**9


@dataclass
class PartResult:
    name: str
    counts: Counts
    figures: dict[str, Any] = field(default_factory=dict)  # what the part did: kills, reorgs, faults, ...
    shortfalls: list[str] = field(default_factory=list)  # what it was to do and did not
    seconds: float = 0.0
    daemon_exit: int = 0

    def ok(self) -> bool:
        return not self.counts.failures() and not self.shortfalls and self.daemon_exit == 0


def _finish(name: str, world: World, profile: Profile, reorg_log: list[Reorg] | None = None,
            flow: Flow | None = None, **figures: Any) -> PartResult:
    settle(world, profile.settle_timeout)
    counts = audit(world, reorg_log or [])
    result = PartResult(name, counts, {"requests": counts.requests, **figures})
    if flow is not None:
        result.figures["send_errors"] = len(flow.errors)
        if flow.sent < max(1, flow.attempts // 2):
            result.shortfalls.append(f"only {flow.sent} of {flow.attempts} requests could be sent: {flow.errors[:3]}")
    return result


def _asker(world: World, prefix: str, paid: Callable[[int], bool] = lambda i: False,
           extra_fee: int = 0) -> Callable[[int], None]:
    """Builds and sends request i: result types in turn, for the paid model where `paid(i)`."""

    def make(i: int) -> None:
        params = world.params(f"{prefix}-{i}", MIXED[i % len(MIXED)], model_spec=PAID_MODEL if paid(i) else DEV_MODEL,
                              text=f"soak question {i}")
        world.send(params, value=world.fee(params) + extra_fee)

    return make


def kills(profile: Profile, tmp: Path, seed: int) -> PartResult:
    """SIGKILLs at random points, start-up included, while requests of every result type flow; the second
    half of them are for a deployment paid over x402."""
    rng = random.Random(seed)
    started = time.monotonic()
    with World("kills", WorldOptions(paid=True), tmp, seed) as world:
        world.start_daemon()
        rate = profile.kill_requests / profile.kill_seconds
        half = profile.kill_requests // 2
        flow = Flow(world, _asker(world, "kills", paid=lambda i: i >= half), rate, count=profile.kill_requests,
                    seed=seed).start()
        at_start_up = 0
        while world.kills < profile.kills or flow.alive():
            if world.kills % 4 == 3:  # while it starts: opening the store, catching up, first sweep
                time.sleep(rng.uniform(0.05, 0.8))
                at_start_up += not world.process.running()
            else:
                world.wait_ready()
                time.sleep(rng.uniform(0.2, 2 * profile.kill_seconds / profile.kills))
            world.kill_daemon()
            time.sleep(rng.uniform(0.0, 0.3))
            world.start_daemon(wait=False)
        flow.join()
        world.wait_ready()
        result = _finish("kills", world, profile, flow=flow, kills=world.kills, kills_at_start_up=at_start_up)
        if world.kills < profile.kills:
            result.shortfalls.append(f"{world.kills} kills < {profile.kills}")
        if not at_start_up:
            result.shortfalls.append("no kill came while the daemon was starting")
        if result.counts.requests - 1 < profile.kill_requests:  # (the last is the settling marker)
            result.shortfalls.append(f"{result.counts.requests - 1} requests on chain < {profile.kill_requests}")
        if not result.counts.settlements:
            result.shortfalls.append("no paid request settled a payment")
        result.daemon_exit = world.close()
    result.seconds = time.monotonic() - started
    return result


REORG_KINDS = ("dropped", "rolled back", "re-included")


def reorgs(profile: Profile, tmp: Path, seed: int) -> PartResult:
    """Reorganisations of every kind anvil offers while requests flow (half of them paid over x402), at
    confirmation depths 0 and 2, some deeper than the depth; they aim at blocks holding fulfilments and
    settlements."""
    started = time.monotonic()
    results = [_reorgs_at(depth, profile, tmp / f"depth-{depth}", seed + depth) for depth in (0, 2)]
    merged = PartResult("reorgs", _sum([r.counts for r in results]))
    for r in results:
        for key, value in r.figures.items():
            merged.figures[key] = merged.figures.get(key, 0) + value
        merged.shortfalls += r.shortfalls
        merged.daemon_exit = merged.daemon_exit or r.daemon_exit
    merged.seconds = time.monotonic() - started
    return merged


def _reorgs_at(confirmations: int, profile: Profile, tmp: Path, seed: int) -> PartResult:
    rng = random.Random(seed)
    tmp.mkdir(parents=True, exist_ok=True)
    deepest = confirmations + 3
    with World(f"reorgs-{confirmations}", WorldOptions(confirmations=confirmations, paid=True), tmp, seed) as world:
        world.start_daemon()
        make = _asker(world, f"reorgs{confirmations}", paid=lambda i: i % 2 == 1)
        flow = Flow(world, make, rate=3.0, seed=seed).start()
        done: list[Reorg] = []
        figures = {"reorgs": 0, "deep_reorgs": 0, "reorgs_hitting_fulfilments": 0,
                   "reorgs_hitting_settlements": 0, **{k.replace(" ", "_"): 0 for k in REORG_KINDS}}
        for r in range(profile.reorgs):
            time.sleep(rng.uniform(1.5, 4.0))
            deep = r < profile.deep_reorgs
            depth = rng.randint(confirmations + 1, deepest) if deep else rng.randint(1, max(1, confirmations))
            # reach the newest fulfilment or settlement; one of a kind no reorg has hit yet is waited for
            signer, facilitator = world.stack.keys.signer.address, world.stack.keys.facilitator.address
            missing = ({signer} if not figures["reorgs_hitting_fulfilments"] else set()) | (
                {facilitator} if not figures["reorgs_hitting_settlements"] else set())
            depth = max(depth, _reach_of_work(world, deepest, missing or {signer, facilitator},
                                              wait=10.0 if missing else 0.0))
            kind = REORG_KINDS[r % len(REORG_KINDS)]
            fork, hit = _reorg(world, kind, depth, rng)
            done.append(Reorg(fork, world.now()))
            figures["reorgs"] += 1
            figures["deep_reorgs"] += depth > confirmations
            figures[kind.replace(" ", "_")] += 1
            figures["reorgs_hitting_fulfilments"] += hit[0]
            figures["reorgs_hitting_settlements"] += hit[1]
        time.sleep(3.0)  # requests after the last reorg too
        flow.stop()
        result = _finish(f"reorgs at depth {confirmations}", world, profile, done, flow, **figures)
        if figures["deep_reorgs"] < profile.deep_reorgs:
            result.shortfalls.append(f"{figures['deep_reorgs']} reorgs deeper than {confirmations}")
        if not figures["reorgs_hitting_fulfilments"] or not figures["reorgs_hitting_settlements"]:
            result.shortfalls.append(f"no reorg at depth {confirmations} hit a fulfilment and a settlement")
        result.daemon_exit = world.close()
    return result


def _reach_of_work(world: World, most: int, senders: AbstractSet[str], wait: float) -> int:
    """How deep a reorg must go to take the newest transaction of `senders` (the signer's fulfilments,
    the facilitator's settlements) with it, waiting up to `wait` seconds for one within `most` blocks of
    the head (0: none that near)."""
    w3 = world.stack.w3
    until = time.monotonic() + wait
    while True:
        head = w3.eth.block_number
        for depth in range(1, min(most, head) + 1):
            block = w3.eth.get_block(head - depth + 1, full_transactions=True)
            if senders & {tx["from"] for tx in block["transactions"] if not isinstance(tx, bytes)}:
                return depth
        if time.monotonic() >= until:
            return 0
        time.sleep(0.3)


def _reorg(world: World, kind: str, depth: int, rng: random.Random) -> tuple[int, tuple[bool, bool]]:
    """Reorganise the newest `depth` blocks; the first block replaced, and whether they held a fulfilment,
    a settlement. Mining pauses meanwhile, so the blocks read are the blocks replaced."""
    w3, keys = world.stack.w3, world.stack.keys
    world.rpc("evm_setIntervalMining", [0])
    try:
        head = w3.eth.block_number
        txs = [tx for n in range(head - depth + 1, head + 1)
               for tx in w3.eth.get_block(n, full_transactions=True)["transactions"] if not isinstance(tx, bytes)]
        senders = {tx["from"] for tx in txs}
        hit = (keys.signer.address in senders, keys.facilitator.address in senders)
        if kind == "rolled back":
            world.rpc("anvil_rollback", [depth])
        elif kind == "dropped":
            world.rpc("anvil_reorg", [depth, []])
        else:  # the same transactions in other blocks, in their order (nonces stay in sequence)
            offsets = sorted(rng.randrange(depth) for _ in txs)
            raws = [world.rpc("eth_getRawTransactionByHash", [tx["hash"].to_0x_hex()]) for tx in txs]
            world.rpc("anvil_reorg", [depth, [[raw, offset] for raw, offset in zip(raws, offsets, strict=True)]])
    finally:
        world.rpc("evm_setIntervalMining", [int(BLOCK_TIME)])
    return head - depth + 1, hit


def rpc_faults(profile: Profile, tmp: Path, seed: int) -> PartResult:
    """Errors, dropped connections, delays, refused and timed-out log ranges and cut WebSockets between the
    daemon and the node, with restarts so the daemon catches up across ranges the proxy refuses."""
    rng = random.Random(seed)
    started = time.monotonic()
    # ranges of 2-4 blocks answer after the RPC timeout, longer ones are refused: halving from any longer
    # range passes through 2-4, so every catch-up meets both
    knobs = FaultKnobs(delay=0.01, error_rate=0.08, drop_rate=0.03, max_log_range=4, slow_log_range=1,
                       slow_log_delay=2.5, ws_cut_every=2.0, seed=seed)
    options = WorldOptions(faults=knobs, chain={"rpc_timeout": 1.5})
    with World("rpc_faults", options, tmp, seed) as world:
        world.start_daemon()
        flow = Flow(world, _asker(world, "faults"), rate=3.0, seed=seed).start()
        end = time.monotonic() + profile.fault_seconds
        for _ in range(profile.fault_kills):
            time.sleep(rng.uniform(0.5, 2) * profile.fault_seconds / (profile.fault_kills + 1))
            world.kill_daemon()
            world.start_daemon()
        time.sleep(max(0.0, end - time.monotonic()))
        flow.stop()
        proxy = world.proxy
        assert proxy is not None
        result = _finish("rpc_faults", world, profile, flow=flow, restarts=world.kills)
        c = proxy.counts
        result.figures.update(rpc_errors=c.errors, rpc_drops=c.drops, refused_ranges=c.refused_ranges,
                              timed_out_ranges=c.slowed_ranges, ws_cuts=c.ws_cuts)
        for what in ("errors", "drops", "refused_ranges", "slowed_ranges", "ws_cuts"):
            if not getattr(c, what):
                result.shortfalls.append(f"the proxy never injected {what}")
        result.daemon_exit = world.close()
    result.seconds = time.monotonic() - started
    return result


def base_fee(profile: Profile, tmp: Path, seed: int) -> PartResult:
    """The base fee jumps to 60 gwei (the cap is 100) while requests flow; they pay for answering at the
    cap, so each is answered, at the price of at most one re-pricing."""
    started = time.monotonic()
    with World("base_fee", WorldOptions(), tmp, seed) as world:
        world.start_daemon()
        flow = Flow(world, _asker(world, "basefee", extra_fee=10**17), rate=2.0, seed=seed).start()
        time.sleep(profile.base_fee_seconds / 2)
        world.rpc("anvil_setNextBlockBaseFeePerGas", [hex(60 * GWEI)])
        time.sleep(profile.base_fee_seconds / 2)
        flow.stop()
        highest = max(int(world.stack.w3.eth.get_block(n)["baseFeePerGas"])
                      for n in range(world.stack.w3.eth.block_number + 1))
        result = _finish("base_fee", world, profile, flow=flow, highest_base_fee_gwei=highest // GWEI)
        if highest < 60 * GWEI:
            result.shortfalls.append("the base fee never jumped")
        result.daemon_exit = world.close()
    result.seconds = time.monotonic() - started
    return result


def hostile_requests(profile: Profile, tmp: Path, seed: int) -> PartResult:
    """Every kind of hostile request, through the real contract, round after round."""
    started = time.monotonic()
    with World("hostile_requests", WorldOptions(latency=(0.0, 0.05)), tmp, seed) as world:
        world.start_daemon()
        sender = HostileSender(world)
        for r in range(profile.hostile_rounds):
            sender.unprofitable_round(r, profile.unprofitable_expiry)
            sender.round(r)
        refused = sender.refusals
        result = _finish("hostile_requests", world, profile, hostile_inputs=len(sender.sent) + refused,
                         refused_by_contract=refused)
        result.figures["refusals_by_contract"] = sender.refused_by_contract
        if result.counts.expired < profile.hostile_rounds * UNPROFITABLE:
            result.shortfalls.append(f"{result.counts.expired} unprofitable requests expired refundable, not "
                                     f"{profile.hostile_rounds * UNPROFITABLE}")
        unexpected = set(sender.refused_by_contract) - REFUSED_BY_CONTRACT
        if unexpected:
            result.shortfalls.append(f"the contract refused what the daemon was to meet: {sorted(unexpected)}")
        result.daemon_exit = world.close()
    result.seconds = time.monotonic() - started
    return result


def hostile_402(profile: Profile, tmp: Path, seed: int) -> PartResult:
    """Providers answering 402 with terms the daemon must not sign: each is refused, nothing is paid, and
    the request ends with a failure on-chain."""
    started = time.monotonic()
    with World("hostile_402", WorldOptions(latency=(0.0, 0.05), hostile_402=tuple(HOSTILE_402)), tmp, seed) as world:
        world.start_daemon()
        sent = 0
        for r in range(profile.hostile_402_rounds):
            for kind in HOSTILE_402:
                world.send(world.params(f"h402-{r}-{kind}", MIXED[0], model_spec=hostile_model(kind)))
                sent += 1
        result = _finish("hostile_402", world, profile, hostile_inputs=sent)
        asked = {kind: server.calls for kind, server in world.hostile.items()}
        result.figures["hostile_402_calls"] = sum(asked.values())
        result.shortfalls += [f"hostile 402 server {k} was never asked" for k, n in asked.items() if not n]
        if not sum(world.hostile["again"].payments.values()):
            result.shortfalls.append("the server that asks again after being paid was never paid")
        result.daemon_exit = world.close()
    result.seconds = time.monotonic() - started
    return result


def _sum(all_counts: list[Counts]) -> Counts:
    total = Counts()
    for c in all_counts:
        for name, value in vars(c).items():
            if name == "examples":
                for what, tags in value.items():
                    total.examples.setdefault(what, []).extend(tags)
            elif name == "stalled_seconds":
                total.stalled_seconds = max(total.stalled_seconds, value)
            else:
                setattr(total, name, getattr(total, name) + value)
    return total


PARTS: dict[str, Callable[[Profile, Path, int], PartResult]] = {
    "kills": kills, "reorgs": reorgs, "rpc_faults": rpc_faults, "base_fee": base_fee,
    "hostile_requests": hostile_requests, "hostile_402": hostile_402,
}
