"""The agents' gateway as it runs: anvil with TestUSD, the local facilitator, the local model server and
the daemon (a child process) serving `/v1/...` on its public listener. Payments are signed here the
way any x402 client signs them (the SDK's exact scheme), so a test can also sign ones the gateway must
refuse; what moved is counted from the token's own events and the model server's books."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from oracle.devnet import LocalStack
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.harness import (
    SIGNER_ENV,
    DaemonProcess,
    dev_config,
    dev_model,
    gateway_section,
    write_config,
)
from oracle.devnet.keys import DevKey, anvil_key
from oracle.devnet.model_server import ModelServer
from oracle.protocol import ACCOUNT_MESSAGE_HEADER, ACCOUNT_SIGNATURE_HEADER, account_message
from oracle.x402.identifier import PAYMENT_IDENTIFIER, with_identifier
from oracle.x402.signer import WalletSigner
from tests import http as http_reply

RATE_PER_MINUTE = 10  # paid calls one payer may make a minute here
DAILY_CAP = 6_000  # base units one payer may spend a day here: five calls at the least price


class Reply(http_reply.Reply):
    @property
    def required(self) -> PaymentRequired:
        """The 402's requirements, from its PAYMENT-REQUIRED header."""
        header = next(v for k, v in self.headers.items() if k.lower() == "payment-required")
        decoded = decode_payment_required_header(header)
        assert isinstance(decoded, PaymentRequired)
        return decoded


def chat(text: str, **more: Any) -> dict[str, Any]:
    """A chat body for the cheapest model: `text` as the one user turn (tags and markers go in it)."""
    return {"model": "cheapest", "messages": [{"role": "user", "content": text}], "max_tokens": 64, **more}


def http(url: str, body: Any = None, headers: dict[str, str] | None = None, method: str | None = None) -> Reply:
    got = http_reply.send(url, method, body, {"Content-Type": "application/json", **(headers or {})})
    return Reply(got.status, got.headers, got.body)


def sign_payment(required: PaymentRequired, payer: DevKey, identifier: str | None = None,
                 changes: dict[str, Any] | None = None) -> str:
    """A PAYMENT-SIGNATURE header paying the 402's requirements (with `changes` made to them first, to
    sign what the gateway must refuse: another amount, asset, network, timeout)."""
    requirements: PaymentRequirements = required.accepts[0].model_copy(update=changes or {}, deep=True)
    inner = ExactEvmScheme(WalletSigner(payer.private_key)).create_payment_payload(requirements)
    extensions = None
    if identifier is not None:
        assert required.extensions is not None and PAYMENT_IDENTIFIER in required.extensions
        extensions = with_identifier(required.extensions, identifier)
    return encode_payment_signature_header(PaymentPayload(payload=inner, accepted=requirements,
                                                          resource=required.resource, extensions=extensions))


def signed_headers(address: str, key: DevKey, payee: str, expires: int | None = None) -> dict[str, str]:
    """The account headers as an agent would build them by hand: a fresh nonce, signed by `key`, for the
    gateway paid to `payee`."""
    message = account_message(address, payee, secrets.token_hex(16),
                              int(time.time()) + 300 if expires is None else expires)
    signature = Account.sign_message(encode_defunct(text=message), key.private_key).signature
    return {ACCOUNT_MESSAGE_HEADER: base64.b64encode(message.encode()).decode(),
            ACCOUNT_SIGNATURE_HEADER: "0x" + bytes(signature).hex()}


def with_authorization(header: str, **changes: Any) -> str:
    """The same payment with fields of its authorization changed (its signature no longer matches)."""
    doc = json.loads(base64.b64decode(header))
    doc["payload"]["authorization"].update(changes)
    return base64.b64encode(json.dumps(doc).encode()).decode()


@dataclass
class Gateway:
    stack: LocalStack
    facilitator: Facilitator
    model: ModelServer
    daemon: DaemonProcess
    url: str  # the public listener
    store_path: Path

    def balance(self, address: str) -> int:
        return int(self.stack.contract("TestUSD").functions.balanceOf(address).call())

    def payer(self, index: int, usd: int) -> DevKey:
        """anvil's dev account `index` (6 and up: used by no other role), holding `usd` more TestUSD units.
        Beyond 9 an account holds no ETH, and needs none: the facilitator pays the settling gas."""
        assert index >= 6, f"dev accounts 0..5 have roles on the local stack, not payer {index}"
        key = DevKey(f"payer {index}", anvil_key(index))
        token = self.stack.contract("TestUSD")
        self.stack.transact(token.functions.mint(key.address, usd), self.stack.keys.owner)
        return key

    def transfers(self, payer: str, from_block: int = 0) -> list[int]:
        """Amounts `payer` paid the operator, from the token's Transfer events."""
        token = self.stack.contract("TestUSD")
        logs = token.events.Transfer().get_logs(from_block=from_block,
                                                argument_filters={"from": payer,
                                                                  "to": self.stack.keys.owner.address})
        return [int(e["args"]["value"]) for e in logs]

    def account(self, payer: DevKey) -> dict[str, Any]:
        """`GET /v1/account/{payer}` with a fresh message the payer signed."""
        got = http(self.url + f"/v1/account/{payer.address}",
                   headers=signed_headers(payer.address, payer, self.stack.keys.owner.address))
        assert got.status == 200, got.body
        doc: dict[str, Any] = got.json()
        return doc

    def paid_call(self, path: str, body: Any, payer: DevKey, identifier: str | None = None) -> tuple[Reply, str]:
        """An unpaid call, then the same paid: (the paid call's reply, the payment header)."""
        unpaid = http(self.url + path, body)
        assert unpaid.status == 402, unpaid.body
        header = sign_payment(unpaid.required, payer, identifier=identifier)
        return http(self.url + path, body, {"PAYMENT-SIGNATURE": header}), header


@contextlib.contextmanager
def running_gateway(tmp: Path, **settings: Any) -> Iterator[Gateway]:
    """The whole stack with the daemon's gateway configured by `settings` (beyond this file's limits)."""
    with LocalStack() as stack:
        facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key,
                                  [f"eip155:{stack.chain_id}"]).start()
        model = ModelServer().start()
        config = dev_config(stack, model.base_url, tmp / "oracle.sqlite")
        config["models"] = [dev_model(model.base_url)]
        config["api"] = {"operator": {"port": 0}, "public": {"enabled": True, "port": 0}}
        config["gateway"] = gateway_section(stack, facilitator.url, **{
            "rate_per_minute": RATE_PER_MINUTE, "daily_cap": DAILY_CAP, "settle_failure_cooldown": 600.0, **settings})
        daemon = DaemonProcess(write_config(config, tmp / "config.toml"),
                               {SIGNER_ENV: stack.keys.signer.private_key.hex()}).start()
        try:
            daemon.wait_ready()
            yield Gateway(stack, facilitator, model, daemon, daemon.api_url("public"), tmp / "oracle.sqlite")
        finally:
            code = daemon.stop()
            model.stop()
            facilitator.stop()
            assert code == 0, daemon.log()[-3000:]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gateway")) as running:
        yield running
