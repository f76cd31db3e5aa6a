"""Requests flowing while a part does its damage, and waiting for a world to settle before counting."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from web3.exceptions import Web3Exception

from oracle.devnet.harness import DEV_MODEL
from oracle.events import (
    CANCELLED_TOPIC,
    FULFILLED_TOPIC,
    REQUESTED_TOPIC,
    decode_cancelled,
    decode_fulfilled,
    decode_requested,
)
from oracle.protocol import ResultSpec, ResultType
from soak.world import World

MARKER = ResultSpec(ResultType.UINT, min=0, max=9)
MARKER_EXTRA_FEE = 10**17  # wei: (gas of an answer) x (the gas price cap), with room


class Flow:
    """A thread sending `count` requests (or until stopped), `make(i)` building each, about `rate` a second."""

    def __init__(self, world: World, make: Callable[[int], None], rate: float, count: int | None = None,
                 seed: int = 0) -> None:
        self.world = world
        self.make = make
        self.rate = rate
        self.count = count
        self.sent = 0
        self.attempts = 0
        self.errors: list[str] = []  # sends the node refused (a reorg moving the sender's nonce, say)
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Flow:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set() and (self.count is None or i < self.count):
            self.attempts += 1
            try:
                self.make(i)
                self.sent += 1
            except (Web3Exception, ValueError, OSError) as exc:
                if len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            i += 1
            self._stop.wait(self._random.uniform(0, 2 / self.rate))


def open_requests(world: World) -> list[str]:
    """Requests on the chain now that are neither answered, nor cancelled, nor past their deadline."""
    w3 = world.stack.w3
    head = w3.eth.get_block("latest")
    address = world.stack.contract("AIOracle").address

    def logs(topic: bytes) -> list[object]:
        return list(w3.eth.get_logs({"address": address, "fromBlock": 0, "toBlock": head["number"],
                                     "topics": ["0x" + topic.hex()]}))

    done = {decode_fulfilled(e).request_id for e in logs(FULFILLED_TOPIC)}
    done |= {decode_cancelled(e).request_id for e in logs(CANCELLED_TOPIC)}
    waiting = []
    for entry in logs(REQUESTED_TOPIC):
        request = decode_requested(entry)
        if request.request_id not in done and request.params.deadline >= head["timestamp"]:
            waiting.append(request.request_id.hex())
    return waiting


def settle(world: World, timeout: float) -> None:
    """Wait (at most `timeout`) until every request is answered or past its deadline, then until a marker
    request sent after all of them is answered: nothing still in the daemon's hands is counted early.
    What is still open then is what the audit calls lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and open_requests(world):
        time.sleep(0.5)
    # It pays for its answer at the gas cap: a base fee still high must not leave it unanswered.
    marker = world.params("marker", MARKER, model_spec=DEV_MODEL, text="the last question", callback_gas_limit=100_000)
    world.mined(world.send(marker, value=world.fee(marker) + MARKER_EXTRA_FEE))
    end = max(deadline, time.monotonic() + 60)
    while time.monotonic() < end and not _marker_answered(world):
        time.sleep(0.5)
    # nothing left in flight: the signer's pending nonce is its mined one
    signer = world.stack.keys.signer.address
    end = time.monotonic() + 30
    while time.monotonic() < end and (world.stack.w3.eth.get_transaction_count(signer, "pending")
                                      != world.stack.w3.eth.get_transaction_count(signer, "latest")):
        time.sleep(0.5)


def _marker_answered(world: World) -> bool:
    w3 = world.stack.w3
    address = world.stack.contract("AIOracle").address
    marker = [decode_requested(e) for e in w3.eth.get_logs({"address": address, "fromBlock": 0,
                                                            "topics": ["0x" + REQUESTED_TOPIC.hex()]})]
    ids = {r.request_id for r in marker if b"[[tag:marker]]" in r.params.prompt}
    answered = {decode_fulfilled(e).request_id for e in w3.eth.get_logs(
        {"address": address, "fromBlock": 0, "topics": ["0x" + FULFILLED_TOPIC.hex()]})}
    return bool(ids) and ids <= answered
