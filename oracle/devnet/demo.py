"""What `oracle dev` runs: the daemon answering requests on the embedded local stack, then staying up.

anvil with every contract deployed, a local OpenAI-compatible model server, the local x402 stack (a
facilitator settling on anvil and a second model server behind its paywall), and the real daemon
(watcher, pipeline, router, x402 paying client, transaction manager) in this process. Four requests
flow through it: a keeper's risk check that pauses a vault, a governance bot's proposal summary, a
plain text question, and the same kind of question to the paywalled model, paid from the daemon's
wallet; each is shown from the request to the consumer's decoded result and the receipt. Then (unless `--once`)
everything stays up as a workbench until Ctrl-C (`oracle.devnet.workbench`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak

from oracle.config import parse_config
from oracle.daemon import Daemon
from oracle.devnet.answer import ask, requested_events
from oracle.devnet.dev_bots import CONTEXT_FILE, DevBot, write_bot_configs
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.harness import (
    PAID_MODEL,
    PAYMENT_ENV,
    SIGNER_ENV,
    dev_config,
    gateway_section,
    paid_model,
    write_config,
    x402_section,
)
from oracle.devnet.llama_server import ModelChoice, ServedModel, serve_model
from oracle.devnet.model_server import ModelServer
from oracle.devnet.paywall import Paywall
from oracle.devnet.stack import LocalStack
from oracle.devnet.workbench import WorkbenchInfo, stay_up
from oracle.protocol import RequestParams, ResultSpec, ResultType, Status
from oracle.store import Store, request_key

API_TOKEN_ENV = "ORACLE_API_TOKEN"
_BOT_ROLES = {"dao_summarizer": "summarise the local Governor's proposals (feed URL printed at start)",
              "trading_agent": "score ETH with the RiskSentinel, act on the ExampleVault (context: {context})"}

Say = Callable[[str], None]
PAID_PRICE = 2_500  # TestUSD base units (6 decimals) per call to the paywalled model


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) came while the demo was waiting for an answer."""


_stopping = threading.Event()  # set when the workbench is told to stop: the demo's waits give up at once


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if _stopping.is_set():
            raise Interrupted
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon did not fulfill the request in time")
        time.sleep(0.1)


def _receipt(store_path: Path, stack: LocalStack, request_id: bytes) -> dict[str, Any]:
    store = Store.open(store_path)
    try:
        found = store.requests.receipt(request_key(stack.chain_id, stack.addresses["AIOracle"], request_id))
    finally:
        store.close()
    return json.loads(found[0]) if found else {}


def _show_receipt(say: Say, receipt: dict[str, Any]) -> None:
    attempts = receipt.get("router", {}).get("attempts", [])
    tried = ", ".join(f"{a['deployment']} {a['outcome']} {a['latency_ms']} ms" for a in attempts) or "none"
    say(f"  receipt    final {receipt.get('final', {}).get('status')}, attempts: {tried}")


def requests_flow(stack: LocalStack, store_path: Path, say: Say) -> bool:
    k = stack.keys
    ok = True

    # 1. A keeper asks the RiskSentinel for a 0..100 score; at 80 or more it pauses the vault.
    sentinel, vault = stack.contract("RiskSentinel"), stack.contract("ExampleVault")
    context = b"ETH fell 30% in one hour; the vault is 92% utilised; oracle deviation 4%."
    receipt = stack.transact(sentinel.functions.requestRiskCheck(context), k.bots,
                             value=sentinel.functions.quote().call())
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    say(f"risk check   request 0x{event.request_id.hex()[:16]}... spec {event.params.model_spec!r}, "
        f"result uint in [0, 100]")
    _wait(lambda: sentinel.functions.lastScore().call() != 0 or _settled(stack, event.request_id))
    score = sentinel.functions.lastScore().call()
    say(f"  fulfilled  RiskSentinel.lastScore() = {score}; ExampleVault.paused() = {vault.functions.paused().call()}")
    _show_receipt(say, _receipt(store_path, stack, event.request_id))

    # 2. A new governance proposal, and a summary of it (what bots/dao_summarizer automates).
    governor, summarizer = stack.contract("DevGovernor"), stack.contract("GovernanceSummarizer")
    actions = ([stack.addresses["DevVotes"]], [0],
               [stack.contract("DevVotes").encode_abi("mint", args=[k.agents.address, 5 * 10**18])])
    description = "# Grant 5 votes to the agents' treasury\nFunds the trading agents' governance budget."
    stack.transact(governor.functions.propose(*actions, description), k.bots)
    proposal_id = governor.functions.hashProposal(*actions, keccak(text=description)).call()
    receipt = stack.transact(summarizer.functions.summarize(*actions, description), k.bots,
                             value=summarizer.functions.quote().call())
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    say(f"governance   proposal {str(proposal_id)[:12]}... summary asked (request 0x{event.request_id.hex()[:16]}...)")
    _wait(lambda: summarizer.functions.hasSummary(proposal_id).call() or _settled(stack, event.request_id))
    summary = summarizer.functions.summaryOf(proposal_id).call()
    say(f"  fulfilled  summary {summary[0]!r}, risk {summary[1]}, rationale {summary[2]!r}")
    ok &= bool(summarizer.functions.hasSummary(proposal_id).call())

    # 3. A plain text question through the TypedResultsConsumer example.
    now = stack.w3.eth.get_block("latest")["timestamp"]
    event = ask(stack, RequestParams(
        callback=stack.addresses["TypedResultsConsumer"], callback_gas_limit=300_000, deadline=now + 600,
        max_tokens=64, temperature=0, seed=1, model_spec="local", prompt=b"In one line: what is an oracle?",
        result=ResultSpec(ResultType.TEXT, max_bytes=64)))
    consumer = stack.contract("TypedResultsConsumer")
    _wait(lambda: consumer.functions.decoded(event.request_id).call()[0])
    decoded = consumer.functions.decoded(event.request_id).call()
    say(f"text         request 0x{event.request_id.hex()[:16]}... -> status {Status(decoded[1]).name.lower()}, "
        f"text {decoded[3]!r}")
    ok &= bool(decoded[1] == Status.SUCCESS)

    # 4. The same question to a provider behind an x402 paywall: the daemon pays it from its wallet.
    usd = stack.contract("TestUSD")
    before = usd.functions.balanceOf(k.payment_wallet.address).call()
    event = ask(stack, RequestParams(
        callback=stack.addresses["TypedResultsConsumer"], callback_gas_limit=300_000, deadline=now + 600,
        max_tokens=64, temperature=0, seed=1, model_spec=PAID_MODEL, prompt=b"In one line: what is x402?",
        result=ResultSpec(ResultType.TEXT, max_bytes=64)))
    _wait(lambda: consumer.functions.decoded(event.request_id).call()[0])
    decoded = consumer.functions.decoded(event.request_id).call()
    paid = before - usd.functions.balanceOf(k.payment_wallet.address).call()
    attempts = _receipt(store_path, stack, event.request_id).get("router", {}).get("attempts", [])
    say(f"paid call    request 0x{event.request_id.hex()[:16]}... -> status {Status(decoded[1]).name.lower()}, "
        f"text {decoded[3]!r}")
    say(f"  x402       paid {paid} TestUSD units ({paid / 10**6:.4f} USD) from the payment wallet "
        f"{k.payment_wallet.address[:10]}...; ledger payment {attempts[-1]['payment_id'] if attempts else None}")
    ok &= bool(decoded[1] == Status.SUCCESS and paid == PAID_PRICE)
    payee = stack.contract("AIOracle").functions.balanceOf(k.owner.address).call()
    say(f"fees         {payee} wei credited to the signer's payee {k.owner.address}")
    return ok


def _settled(stack: LocalStack, request_id: bytes) -> bool:
    return bool(stack.contract("AIOracle").functions.commitments(request_id).call() == b"\0" * 32)


@dataclass
class DevServers:
    """What `oracle dev` starts beside anvil, and the config it writes for them."""

    stack: LocalStack
    facilitator: Facilitator
    model: ServedModel
    paid: ModelServer
    config_path: Path
    store_path: Path
    raw_config: dict[str, Any]
    bots: list[DevBot]

    @classmethod
    def start(cls, stack: LocalStack, workdir: Path, model_choice: ModelChoice) -> DevServers:
        network = f"eip155:{stack.chain_id}"
        facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [network]).start()
        paid: ModelServer | None = None
        try:
            paid = ModelServer(paywall=Paywall(facilitator.url, network, stack.addresses["TestUSD"],
                                               stack.keys.owner.address, PAID_PRICE)).start()
            model = serve_model(model_choice)  # the server `--model` chose, and its catalog entry
        except BaseException:
            for server in (paid, facilitator):
                if server is not None:
                    server.stop()
            raise
        store_path = workdir / "oracle.sqlite"
        raw = dev_config(stack, model.base_url, store_path)
        raw["models"] = [model.entry, paid_model(stack, paid.base_url, PAID_PRICE)]
        raw["x402"] = x402_section(stack)
        raw["api"] = {"operator": {"port": 0}, "public": {"enabled": True, "port": 0}, "token_env": API_TOKEN_ENV}
        raw["gateway"] = gateway_section(stack, facilitator.url)
        return cls(stack, facilitator, model, paid, write_config(raw, workdir / "config.toml"), store_path, raw,
                   write_bot_configs(stack, workdir))

    def info(self, api_urls: Mapping[str, str]) -> WorkbenchInfo:
        stack, keys = self.stack, self.stack.keys
        return WorkbenchInfo(
            stack.rpc_url, stack.ws_url, stack.chain_id, dict(stack.addresses),
            [keys.owner, keys.signer, keys.payment_wallet, keys.facilitator, keys.bots, keys.agents],
            self.config_path, self.store_path,
            [(f"deployment local: {self.model.entry['model']} ({self.model.entry['provider']})", self.model.base_url),
             (f"model {PAID_MODEL} behind an x402 paywall, {PAID_PRICE} TestUSD units a call", self.paid.base_url),
             ("x402 facilitator settling on this chain", self.facilitator.url)],
            api_urls, API_TOKEN_ENV, os.environ.get(API_TOKEN_ENV, ""),
            gateway=True, bots=[(_BOT_ROLES[b.name].format(context=self.config_path.parent / CONTEXT_FILE), b.command())
                  for b in self.bots])

    def stop(self) -> None:
        self.paid.stop()
        self.model.stop()
        self.facilitator.stop()


async def _run(servers: DevServers, once: bool, say: Say) -> bool:
    stack = servers.stack
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        _stopping.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    daemon = Daemon(parse_config(servers.raw_config), shutdown_grace=5.0)
    task = asyncio.create_task(daemon.run(stop))
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # it could not start: its error is the answer
        ready.cancel()
        error = task.exception()
        say(f"daemon       could not start: {error if error is not None else 'it stopped at once'}")
        return False
    say(f"daemon       running: signer {stack.keys.signer.address}, model server {servers.model.base_url}, "
        f"paywalled model server {servers.paid.base_url} (x402 facilitator {servers.facilitator.url})")
    ok: bool | None = None  # the demo's outcome, once it has one
    try:
        ok = await asyncio.to_thread(requests_flow, stack, servers.store_path, say)
        if not once:
            await stay_up(servers.info(daemon.api_urls), stop, say)
    except Interrupted:
        pass
    finally:
        stop.set()
        await task
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return ok if ok is not None else _stopping.is_set()


def run_dev(once: bool = False, say: Say = print, model: ModelChoice = "dev") -> bool:
    """Start everything, show four requests answered by the daemon, then (unless `once`) stay up until
    Ctrl-C or SIGTERM. True if the requests all succeeded, or the workbench was stopped before they
    were done; False if one failed (even if it was stopped later)."""
    _stopping.clear()
    # Outside the event loop (starting anvil, loading a model), SIGTERM ends the run as Ctrl-C does:
    # through every `finally`, so whatever was started is stopped.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="oracle-dev-") as tmp, LocalStack() as stack:
            say(f"anvil        {stack.rpc_url} (chain {stack.chain_id}); contracts: "
                f"{', '.join(f'{n} {a[:10]}...' for n, a in stack.addresses.items())}")
            os.environ[SIGNER_ENV] = stack.keys.signer.private_key.hex()  # the daemon reads its keys from here
            os.environ[PAYMENT_ENV] = stack.keys.payment_wallet.private_key.hex()
            os.environ.setdefault(API_TOKEN_ENV, secrets.token_hex(16))  # this run's operator token
            servers = DevServers.start(stack, Path(tmp), model)
            try:
                return asyncio.run(_run(servers, once, say))
            finally:
                signal.signal(signal.SIGTERM, _interrupt)  # the closed loop left SIGTERM at its default
                servers.stop()
    except KeyboardInterrupt:
        say("stopped      before the demo's requests were done")
        return True
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
