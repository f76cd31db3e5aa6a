"""The daemon end to end: a local stack, a local model server, and `oracle run` as a child process."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oracle.chain.events import FULFILLED_TOPIC, decode_fulfilled
from oracle.chain.txmanager import SKIPPED_TOPIC, UNKNOWN_REQUEST
from oracle.devnet import LocalStack
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, write_config
from oracle.devnet.model_server import ModelServer
from oracle.store import Store


@dataclass
class Running:
    stack: LocalStack
    model: ModelServer
    daemon: DaemonProcess
    config: dict[str, Any]
    tmp: Path

    def restart(self) -> None:
        self.daemon.start()


def start_daemon(stack: LocalStack, model: ModelServer, tmp: Path, **overrides: Any) -> Running:
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite", **overrides)
    path = write_config(config, tmp / "config.toml")
    daemon = DaemonProcess(path, {SIGNER_ENV: stack.keys.signer.private_key.hex()}).start()
    return Running(stack, model, daemon, config, tmp)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[LocalStack, ModelServer, Path]]:
    """A local stack and model server of the test's own, for a daemon the test starts itself."""
    with LocalStack() as stack:
        model = ModelServer().start()
        try:
            yield stack, model, tmp_path
        finally:
            model.stop()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("daemon")
    with LocalStack() as stack:
        model = ModelServer().start()
        run = start_daemon(stack, model, tmp)
        try:
            yield run
        finally:
            code = run.daemon.stop()
            model.stop()
            assert code == 0, run.daemon.log()[-3000:]


@dataclass
class ChainAudit:
    """What the final chain says of the daemon's work, read from blocks, receipts and events alone."""

    fulfilled: Counter[bytes]  # Fulfilled events per request id
    reverted: list[str]  # the signer's transactions that reverted
    skipped_unknown: int  # responses sent for requests that were no longer open (FulfillmentSkipped UnknownRequest)
    latest_nonce: int  # the signer's mined transactions
    pending_nonce: int  # ... and those the node holds: a gap or a stuck one keeps them apart


def audit_chain(stack: LocalStack) -> ChainAudit:
    w3, signer = stack.w3, stack.keys.signer.address
    oracle = stack.contract("AIOracle").address
    reverted = []
    for number in range(w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            assert not isinstance(tx, bytes)
            if tx["from"] == signer and w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                reverted.append(tx["hash"].to_0x_hex())
    fulfilled = Counter(decode_fulfilled(entry).request_id for entry in w3.eth.get_logs(
        {"address": oracle, "fromBlock": 0, "topics": ["0x" + FULFILLED_TOPIC.hex()]}))
    skipped = w3.eth.get_logs({"address": oracle, "fromBlock": 0, "topics": ["0x" + SKIPPED_TOPIC.hex()]})
    unknown = sum(1 for entry in skipped if bytes(entry["data"])[:4] == UNKNOWN_REQUEST)
    return ChainAudit(fulfilled, reverted, unknown, w3.eth.get_transaction_count(signer, "latest"),
                      w3.eth.get_transaction_count(signer, "pending"))


def gas_paid_on_chain(stack: LocalStack) -> int:
    """What the signer's mined transactions cost, wei, from the final chain's receipts."""
    w3, signer, total = stack.w3, stack.keys.signer.address, 0
    for number in range(w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            assert not isinstance(tx, bytes)
            if tx["from"] == signer:
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                total += receipt["gasUsed"] * receipt["effectiveGasPrice"]
    return total


def gas_on_record(run: Running) -> int:
    """The day's gas spend the daemon's store holds (what its daily budget is checked against)."""
    store = Store.open(run.config["store"]["path"])
    try:
        return store.txs.gas_spent(run.stack.chain_id, datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"))
    finally:
        store.close()
