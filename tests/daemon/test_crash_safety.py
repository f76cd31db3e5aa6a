"""Crash safety: SIGKILL the daemon at random moments, at least 20 times across 200 requests,
restarting it each time. At the end every request is fulfilled exactly once (counted from on-chain
events) and the model server's own books show no request key answered twice."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import Knobs, ModelServer
from oracle.protocol import ResultSpec, ResultType
from oracle.store import request_key
from tests.daemon.helpers import ask_params, decoded, fulfillments_per_request, start_daemon

REQUESTS = 200
KILLS = 20
SPECS = [ResultSpec(ResultType.UINT, min=0, max=10**6), ResultSpec(ResultType.BOOL),
         ResultSpec(ResultType.TEXT, max_bytes=40), ResultSpec(ResultType.CHOICE, labels=("a", "b", "c"))]


def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    with LocalStack() as stack:
        # a little model latency widens the windows between "asked" and "answer stored"
        model = ModelServer(Knobs(latency=0.03)).start()
        run = start_daemon(stack, model, tmp_path)
        ids: list[bytes] = []

        def send() -> None:
            for i in range(REQUESTS):
                ids.append(ask(stack, ask_params(run, SPECS[i % len(SPECS)], prompt=f"crash test {i}")).request_id)
                time.sleep(rng.uniform(0.0, 0.04))

        sender = threading.Thread(target=send)
        sender.start()
        kills = 0
        try:
            while kills < KILLS or sender.is_alive():
                run.daemon.wait_ready()
                time.sleep(rng.uniform(0.05, 1.0))  # somewhere in the middle of its work
                run.daemon.kill()
                kills += 1
                time.sleep(rng.uniform(0.0, 0.2))
                run.daemon.start()
            sender.join()
            assert len(ids) == REQUESTS
            wait_until(lambda: all(decoded(run, i)["delivered"] for i in ids), 120, interval=0.5,
                       what="every request to be fulfilled")
            # the last start is up, and a later request answered: nothing more is coming for the others
            run.daemon.wait_ready()
            marker = ask(stack, ask_params(run, SPECS[0], prompt="after the last kill")).request_id
            wait_until(lambda: decoded(run, marker)["delivered"], 30, what="the marker request")
            counts = fulfillments_per_request(stack)
            assert [i.hex() for i in ids if counts[i] != 1] == []
            keys = [request_key(stack.chain_id, stack.addresses["AIOracle"], i) for i in ids]
            assert [k for k in keys if model.books.answered[k] != 1] == []
            assert kills >= KILLS and run.daemon.log().count("oracle running") == kills + 1
        finally:
            code = run.daemon.stop()
            model.stop()
        assert code == 0, run.daemon.log()[-3000:]
