"""RPC faults between the daemon and the node (errors, dropped connections, delays, refused log
ranges, cut WebSockets): no request is lost and none is fulfilled twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.fault_proxy import FaultKnobs, FaultProxy
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import ModelServer
from oracle.protocol import ResultSpec, ResultType
from tests.daemon.helpers import Running, ask_params, decoded, fulfillments_per_request, start_daemon


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[Running, FaultProxy]]:
    with LocalStack() as stack:
        model = ModelServer().start()
        proxy = FaultProxy(stack.rpc_url, stack.ws_url, FaultKnobs(
            delay=0.005, error_rate=0.15, drop_rate=0.05, max_log_range=3, ws_cut_every=1.0)).start()
        run = start_daemon(stack, model, tmp_path, rpc_url=proxy.rpc_url, ws_url=proxy.ws_url)
        try:
            yield run, proxy
        finally:
            run.daemon.stop()
            proxy.stop()
            model.stop()


def test_no_request_lost_or_doubled_under_rpc_faults(faulty: tuple[Running, FaultProxy]) -> None:
    run, proxy = faulty
    stack = run.stack
    spec = ResultSpec(ResultType.UINT, min=0, max=1_000)
    ids = []
    for i in range(12):
        ids.append(ask(stack, ask_params(run, spec, prompt=f"live {i}")).request_id)
        time.sleep(0.15)
    assert run.daemon.stop() == 0
    for i in range(8):  # while the daemon is down, spread over many blocks: the backfill must page
        ids.append(ask(stack, ask_params(run, spec, prompt=f"backfill {i}")).request_id)
        stack.w3.provider.make_request("anvil_mine", [3])  # type: ignore[arg-type]
    run.restart()
    wait_until(lambda: all(decoded(run, i)["delivered"] for i in ids), 90, interval=0.5,
               what="every request to be fulfilled")
    marker = ask(stack, ask_params(run, spec, prompt="after all the others")).request_id  # answered last
    wait_until(lambda: decoded(run, marker)["delivered"], 60, interval=0.5, what="the marker request")
    counts = fulfillments_per_request(stack)
    assert all(counts[i] == 1 for i in ids), {i.hex(): counts[i] for i in ids if counts[i] != 1}
    c = proxy.counts
    assert c.errors > 0 and c.drops > 0 and c.refused_ranges > 0 and c.ws_cuts > 0, c


def test_log_ranges_that_time_out_are_halved_like_refused_ones(tmp_path: Path) -> None:
    with LocalStack() as stack:
        model = ModelServer().start()
        # ranges above 3 blocks answer after 3 s; the daemon gives a call 1 s
        proxy = FaultProxy(stack.rpc_url, stack.ws_url, FaultKnobs(slow_log_range=3, slow_log_delay=3.0)).start()
        run = start_daemon(stack, model, tmp_path, rpc_url=proxy.rpc_url, ws_url=proxy.ws_url, rpc_timeout=1.0)
        try:
            run.daemon.wait_ready()
            assert run.daemon.stop() == 0
            spec = ResultSpec(ResultType.UINT, min=0, max=1_000)
            ids = []
            for i in range(4):  # while the daemon is down, spread over many blocks: the backfill must page
                ids.append(ask(stack, ask_params(run, spec, prompt=f"backfill {i}")).request_id)
                stack.w3.provider.make_request("anvil_mine", [5])  # type: ignore[arg-type]
            run.restart()
            wait_until(lambda: all(decoded(run, i)["delivered"] for i in ids), 60, interval=0.3,
                       what="every request to be fulfilled")
            assert proxy.counts.slowed_ranges > 0
            assert "failed (eth_getLogs: TimeoutError" in run.daemon.log()
        finally:
            run.daemon.stop()
            proxy.stop()
            model.stop()
