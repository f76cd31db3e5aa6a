"""What `oracle run` says when it cannot serve: each start-up check's own message, one line to act on,
exit 2, no traceback; and one daemon per store."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, wait_until, write_config
from oracle.devnet.model_server import ModelServer


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[LocalStack, ModelServer]]:
    with LocalStack() as stack:
        model = ModelServer().start()
        try:
            yield stack, model
        finally:
            model.stop()


def refusal(stack: LocalStack, model: ModelServer, tmp: Path, change: Callable[[dict[str, Any]], None]) -> str:
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite")
    change(config)
    daemon = DaemonProcess(write_config(config, tmp / "config.toml"),
                           {SIGNER_ENV: stack.keys.signer.private_key.hex()}).start()
    wait_until(lambda: not daemon.alive(), 60, what="the daemon to refuse to start")
    assert daemon.stop() == 2, daemon.log()
    log = daemon.log()
    assert "Traceback" not in log, log
    return log


def _chain(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c["chains"][0].update(fields)


def test_an_oracle_address_without_code(shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    log = refusal(*shared, tmp_path, _chain(oracle="0x" + "12" * 20))
    assert "chains[local].oracle: there is no contract at 0x1212121212121212121212121212121212121212" in log
    assert "oracle deploy --config <this config> --chain local" in log


def test_code_that_is_not_the_oracle(shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    stack, _ = shared
    log = refusal(*shared, tmp_path, _chain(oracle=stack.addresses["TestUSD"]))
    assert f"the contract at {stack.addresses['TestUSD']} is not an AIOracle this daemon can answer" in log


def test_a_signer_the_oracle_does_not_know(shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    stack, _ = shared
    oracle, keys = stack.contract("AIOracle"), stack.keys
    stack.transact(oracle.functions.removeSigner(keys.signer.address), keys.owner)
    try:
        log = refusal(*shared, tmp_path, lambda c: None)
    finally:
        stack.transact(oracle.functions.setSigner(keys.signer.address, keys.owner.address), keys.owner)
    assert f"the signer {keys.signer.address} is not registered on oracle {stack.addresses['AIOracle']}" in log
    assert f"oracle admin --config <this config> --chain local set-signer {keys.signer.address}" in log


def test_a_catalog_that_cannot_serve_typed_results(shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    log = refusal(*shared, tmp_path, lambda c: c["models"][0].update(capabilities=["seed"]))
    assert "no deployment has the json_schema capability" in log


def test_an_unreachable_node_is_one_line_naming_it(shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    log = refusal(*shared, tmp_path, _chain(rpc_url="http://127.0.0.1:9", ws_url=None))
    (line,) = [x for x in log.splitlines() if "127.0.0.1:9" in x]
    assert "the node at http://127.0.0.1:9 does not answer" in line and "is rpc_url right?" in line


def test_a_second_daemon_on_the_same_store_is_refused_with_the_holders_pid(
        shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    stack, model = shared
    path = write_config(dev_config(stack, model.base_url, tmp_path / "oracle.sqlite"), tmp_path / "config.toml")
    env = {SIGNER_ENV: stack.keys.signer.private_key.hex()}
    first = DaemonProcess(path, env, log_path=tmp_path / "first.log").start()
    try:
        first.wait_ready()
        second = DaemonProcess(path, env, log_path=tmp_path / "second.log").start()
        wait_until(lambda: not second.alive(), 60, what="the second daemon to be refused")
        assert second.stop() == 2
        assert first.process is not None
        assert re.search(rf"is in use by another oracle daemon \(pid {first.process.pid}\)", second.log()), second.log()
        assert first.alive()
    finally:
        assert first.stop() == 0
    # A daemon killed outright leaves no lock behind: the next one starts.
    again = DaemonProcess(path, env, log_path=tmp_path / "third.log").start()
    again.wait_ready()
    again.kill()
    after = DaemonProcess(path, env, log_path=tmp_path / "fourth.log").start()
    after.wait_ready()
    assert after.stop() == 0


def test_an_operator_port_another_process_holds(shared: tuple[LocalStack, ModelServer], tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        log = refusal(*shared, tmp_path, lambda c: c.update(api={"operator": {"port": port}}))
    assert f"api.operator: cannot listen on 127.0.0.1:{port}" in log
    assert "set api.operator.port to a free one (0 takes any) or api.operator.enabled = false" in log
