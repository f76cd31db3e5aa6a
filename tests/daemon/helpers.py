"""What the daemon's end-to-end tests share: a daemon started as a child process, the final chain's
account of its work, the store's view of a request, and the example consumer's decoded results."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from oracle.chain.errors import UNKNOWN_REQUEST
from oracle.devnet import LocalStack
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, wait_until, write_config
from oracle.devnet.model_server import ModelServer
from oracle.events import FULFILLED_TOPIC, SKIPPED_TOPIC, decode_fulfilled
from oracle.protocol import RequestParams, ResultSpec
from oracle.store import Store, StoredRequest, StoredTx, request_key


class OnStack(Protocol):
    """What the helpers that only send requests and read the chain need of a running setup."""

    @property
    def stack(self) -> LocalStack: ...


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


# fees for tests of the transaction manager: re-pricing after a second, by half again each time
QUICK_GAS: dict[str, Any] = {"max_fee_per_gas": 100 * 10**9, "priority_fee": 10**9, "daily_budget": 100 * 10**18,
                             "low_balance": 10**16, "replace_after": 1.0, "fee_bump_percent": 50}


def start_ready(env: tuple[LocalStack, ModelServer, Path], **gas: Any) -> Running:
    """A daemon on the test's own stack with QUICK_GAS (and `gas` over it), once it is running."""
    stack, model, tmp = env
    run = start_daemon(stack, model, tmp, gas={**QUICK_GAS, **gas})
    run.daemon.wait_ready()
    return run


def key_of(run: OnStack, request_id: bytes) -> str:
    return request_key(run.stack.chain_id, run.stack.addresses["AIOracle"], request_id)


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


def anvil_rpc(stack: LocalStack, method: str, params: list[Any]) -> Any:
    reply = stack.w3.provider.make_request(method, params)  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply.get("result")


@contextmanager
def mining_held(stack: LocalStack) -> Iterator[Callable[[], None]]:
    """Nothing is mined until `resume()` or the end of the block (mining resumes however it ends)."""
    anvil_rpc(stack, "evm_setAutomine", [False])
    try:
        yield lambda: anvil_rpc(stack, "evm_setAutomine", [True])
    finally:
        anvil_rpc(stack, "evm_setAutomine", [True])


def txs_on_record(run: Running, states: list[str]) -> list[StoredTx]:
    """The signer's transactions the daemon's store holds in `states`."""
    store = Store.open(run.config["store"]["path"])
    try:
        return store.txs.in_state(run.stack.chain_id, run.stack.keys.signer.address, states)
    finally:
        store.close()


def row_of(run: Running, request_id: bytes) -> StoredRequest | None:
    store = Store.open(run.config["store"]["path"])
    try:
        return store.requests.get(request_key(run.stack.chain_id, run.stack.addresses["AIOracle"], request_id))
    finally:
        store.close()


def state_of(run: Running, request_id: bytes) -> str | None:
    row = row_of(run, request_id)
    return row.state if row else None


def cursor_of(run: Running) -> int:
    store = Store.open(run.config["store"]["path"])
    try:
        found = store.blocks.cursor(run.stack.chain_id, run.stack.addresses["AIOracle"])
        return found[0] if found else -1
    finally:
        store.close()


def ask_params(run: OnStack, spec: ResultSpec, prompt: str | bytes = "Rate the proposal.", **kw: Any) -> RequestParams:
    now = run.stack.w3.eth.get_block("latest")["timestamp"]
    fields: dict[str, Any] = dict(
        callback=run.stack.addresses["TypedResultsConsumer"], callback_gas_limit=500_000, deadline=now + 300,
        max_tokens=64, temperature=0, seed=1, model_spec="dev-model-2026-01-01",
        prompt=prompt if isinstance(prompt, bytes) else prompt.encode(),
        result=spec)
    fields.update(kw)
    return RequestParams(**fields)


def decoded(run: OnStack, request_id: bytes) -> dict[str, Any]:
    names = ["delivered", "status", "reasonCode", "text", "flag", "unsignedValue", "signedValue", "modelUsed",
             "receiptHash"]
    values = run.stack.contract("TypedResultsConsumer").functions.decoded(request_id).call()
    return dict(zip(names, values, strict=True))


def wait_delivered(run: OnStack, request_id: bytes, timeout: float = 30) -> dict[str, Any]:
    wait_until(lambda: decoded(run, request_id)["delivered"], timeout, what="fulfillment",)
    return decoded(run, request_id)

def fulfillments_per_request(stack: LocalStack) -> Counter[bytes]:
    """`Fulfilled` events on the final chain, per request id."""
    return audit_chain(stack).fulfilled
