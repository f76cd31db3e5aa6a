"""One soak world: anvil mining a block a second with the contracts, the local model servers (one free,
one behind the x402 paywall), a facilitator, optionally the fault proxy and hostile 402 servers, and
the real daemon as a child process. Requests are sent the way a busy consumer sends them: many per
block, without waiting for each receipt.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from web3.types import TxParams, Wei

from oracle.devnet.facilitator import Facilitator
from oracle.devnet.fault_proxy import FaultKnobs, FaultProxy
from oracle.devnet.harness import (
    DEV_MODEL,
    PAYMENT_ENV,
    SIGNER_ENV,
    DaemonProcess,
    dev_config,
    paid_model,
    wait_until,
    write_config,
    x402_section,
)
from oracle.devnet.model_server import Knobs, ModelServer
from oracle.devnet.paywall import Paywall
from oracle.devnet.stack import LocalStack, StackSettings
from oracle.devnet.tags import tagged
from oracle.protocol import RequestParams, ResultSpec, ResultType
from soak.hostile402 import Hostile402

PRICE = 3_000  # TestUSD base units per paid model call
BLOCK_TIME = 1.0
DEADLINE = 3_600  # seconds: an answerable request must never come near it


@dataclass
class WorldOptions:
    confirmations: int = 0
    latency: tuple[float, float] = (0.05, 0.3)  # model latency, drawn per call
    paid: bool = False  # a deployment behind the x402 paywall beside the free one
    faults: FaultKnobs | None = None  # the daemon reaches the node through the fault proxy
    hostile_402: tuple[str, ...] = ()  # kinds of hostile 402 servers, each a deployment
    replace_after: float = 6.0
    chain: dict[str, Any] = field(default_factory=dict)  # more of the chain's config table


class World:
    def __init__(self, name: str, options: WorldOptions, tmp: Path, seed: int) -> None:
        self.name = name
        self.options = options
        self.tmp = tmp
        self.random = random.Random(seed)
        self.stack = LocalStack(StackSettings(block_time=BLOCK_TIME))
        self.free: ModelServer | None = None
        self.paid: ModelServer | None = None
        self.paywall: Paywall | None = None
        self.facilitator: Facilitator | None = None
        self.proxy: FaultProxy | None = None
        self.hostile: dict[str, Hostile402] = {}
        self.daemon: DaemonProcess | None = None
        self.config: dict[str, Any] = {}
        self.kills = 0
        self.sent = 0
        # (killed, back up) in chain time: not counted in a request's wait (the audit counts stalls of a
        # running daemon; kills are counted apart)
        self.downtime: list[tuple[int, int]] = []
        self._down_since: int | None = None
        self._fees: dict[tuple[str, int, int], int] = {}
        self._stack_up = False

    # ------------------------------------------------------------ up and down

    def __enter__(self) -> World:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        o, stack = self.options, self.stack
        stack.start()
        self._stack_up = True
        low, high = o.latency
        self.free = ModelServer(Knobs(latency=low, latency_max=high, seed=self.random.randrange(2**32))).start()
        network = f"eip155:{stack.chain_id}"
        models: list[dict[str, Any]] = []
        if o.paid or o.hostile_402:
            self.facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [network]).start()
        if o.paid:
            assert self.facilitator is not None
            self.paywall = Paywall(self.facilitator.url, network, stack.addresses["TestUSD"], stack.keys.owner.address,
                                   PRICE)
            self.paid = ModelServer(Knobs(latency=low, latency_max=high, seed=self.random.randrange(2**32)),
                                    paywall=self.paywall).start()
            models.append(paid_model(stack, self.paid.base_url, PRICE))
        for kind in o.hostile_402:
            server = Hostile402(kind, network, stack.addresses["TestUSD"], stack.keys.owner.address, PRICE).start()
            self.hostile[kind] = server
            models.append({**paid_model(stack, server.base_url, PRICE, model=hostile_model(kind)),
                           "id": f"hostile-{kind}", "provider": f"hostile-{kind}"})
        rpc_url = ws_url = None
        if o.faults is not None:
            self.proxy = FaultProxy(stack.rpc_url, stack.ws_url, o.faults).start()
            rpc_url, ws_url = self.proxy.rpc_url, self.proxy.ws_url
        config = dev_config(stack, self.free.base_url, self.tmp / "oracle.sqlite", rpc_url=rpc_url, ws_url=ws_url,
                            confirmations=o.confirmations, **o.chain)
        config["chains"][0]["gas"]["replace_after"] = o.replace_after
        config["models"] += models
        env = {SIGNER_ENV: stack.keys.signer.private_key.hex()}
        if models:
            config["x402"] = x402_section(stack, reconcile_interval=2.0, stale_after=5.0)
            env[PAYMENT_ENV] = stack.keys.payment_wallet.private_key.hex()
        self.config = config
        self.daemon = DaemonProcess(write_config(config, self.tmp / "config.toml"), env,
                                    log_path=self.tmp / "daemon.log")

    def close(self) -> int:
        """Stop everything; the daemon's exit code (0 after a clean stop)."""
        code = 0
        if self.daemon is not None:
            code = self.daemon.stop()
            self.daemon = None
        for server in [self.free, self.paid, *self.hostile.values()]:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        for other in (self.proxy, self.facilitator):
            if other is not None:
                with contextlib.suppress(Exception):
                    other.stop()
        self.free = self.paid = self.proxy = self.facilitator = None
        self.hostile = {}
        if self._stack_up:
            self.stack.stop()
            self._stack_up = False
        return code

    # ------------------------------------------------------------ the daemon

    @property
    def process(self) -> DaemonProcess:
        assert self.daemon is not None
        return self.daemon

    def start_daemon(self, wait: bool = True) -> None:
        self.process.start()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        self.process.wait_ready(60)
        if self._down_since is not None:
            self.downtime.append((self._down_since, self.now()))
            self._down_since = None

    def kill_daemon(self) -> None:
        if self._down_since is None:
            self._down_since = self.now()
        self.process.kill()
        self.kills += 1

    # ------------------------------------------------------------ the chain

    def rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.stack.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result")

    def now(self) -> int:
        return int(self.stack.w3.eth.get_block("latest")["timestamp"])

    def params(self, tag: str, spec: ResultSpec, *, text: str = "soak question", model_spec: str = DEV_MODEL,
               prompt: bytes | None = None, deadline: int = DEADLINE, **fields: Any) -> RequestParams:
        """A request through the TypedResultsConsumer example, its prompt carrying `tag`."""
        body = tagged(tag, text).encode() if prompt is None else tagged(tag).encode() + b" " + prompt
        values: dict[str, Any] = {
            "callback": self.stack.addresses["TypedResultsConsumer"], "callback_gas_limit": 500_000,
            "deadline": self.now() + deadline, "max_tokens": 64, "temperature": 0, "seed": 1,
            "model_spec": model_spec, "prompt": body, "result": spec}
        values.update(fields)
        return RequestParams(**values)

    def fee(self, params: RequestParams) -> int:
        key = (params.model_spec, params.max_tokens, params.callback_gas_limit)
        if key not in self._fees:
            self._fees[key] = int(self.stack.contract("AIOracle").functions.quote(*key).call())
        return self._fees[key]

    def send(self, params: RequestParams, *, direct: bool = False, value: int | None = None,
             gas: int = 1_500_000) -> bytes:
        """Send a request without waiting for it to be mined; the transaction hash. Through the consumer
        example by default; `direct` asks the oracle itself from an account, for callbacks elsewhere."""
        stack = self.stack
        if direct:
            data = stack.contract("AIOracle").encode_abi("request", [params.to_abi()])
            to, sender = stack.addresses["AIOracle"], stack.keys.agents.address
        else:
            data = stack.contract("TypedResultsConsumer").encode_abi("ask", [params.to_abi()])
            to, sender = stack.addresses["TypedResultsConsumer"], stack.keys.bots.address
        tx: TxParams = {"from": sender, "to": to, "data": data, "gas": gas,
                        "value": Wei(self.fee(params) if value is None else value)}
        self.sent += 1
        return bytes(stack.w3.eth.send_transaction(tx))

    def mined(self, tx_hash: bytes, timeout: float = 30) -> Any:
        return self.stack.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)  # type: ignore[arg-type]

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        wait_until(predicate, timeout, interval=0.25, what=what)


def hostile_model(kind: str) -> str:
    return f"hostile-{kind}-2026-01-01"


MIXED = [ResultSpec(ResultType.UINT, min=0, max=10**6), ResultSpec(ResultType.BOOL),
         ResultSpec(ResultType.INT, min=-500, max=500), ResultSpec(ResultType.TEXT, max_bytes=64),
         ResultSpec(ResultType.CHOICE, labels=("up", "down", "flat")), ResultSpec(ResultType.JSON, max_bytes=200),
         ResultSpec(ResultType.ABI, max_bytes=512, abi_type="(string,uint256,bool)")]

