"""Model servers that answer every call with a hostile HTTP 402, and count the payments they are sent.

Each kind breaks one of the terms the daemon pins or bounds; `again` offers fair terms and answers a
paid call with another 402 instead of the model's answer (as a server that takes payments and never
serves would). A payment header received by any of them except the first per request by `again` is an
unintended payment: the daemon should never have signed it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from typing import Any

from aiohttp import web
from x402.http.constants import PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER, X_PAYMENT_HEADER
from x402.http.utils import encode_payment_required_header
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo

from oracle.devnet.loopback import LoopbackServer
from oracle.devnet.tags import tag_of

FOREIGN = "0x000000000000000000000000000000000000dEaD"
YEAR = 365 * 24 * 3600

# kind -> what it does wrong
KINDS = {
    "price": "asks more than the per-payment cap",
    "payto": "names a payTo other than the pinned one",
    "asset": "names another token",
    "network": "names another network",
    "domain": "names an EIP-712 domain the token does not have",
    "validity": "asks for a signature valid for a year",
    "not-base64": "sends a PAYMENT-REQUIRED header that is not base64",
    "not-json": "sends base64 of something that is not JSON",
    "wrong-types": "sends requirements whose fields have the wrong types",
    "digits": "writes the amount in non-ASCII digits",
    "no-offers": "offers nothing to pay with",
    "again": "asks again after being paid",
}


class Hostile402(LoopbackServer):
    def __init__(self, kind: str, network: str, asset: str, pay_to: str, price: int) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown hostile 402 kind {kind!r}; known: {', '.join(KINDS)}")
        self.kind = kind
        self.fair = PaymentRequirements(scheme="exact", network=network, asset=asset, amount=str(price),
                                        pay_to=pay_to, max_timeout_seconds=120,
                                        extra={"name": "Test USD", "version": "2"})
        self.calls = 0
        self.payments: Counter[str] = Counter()  # payment headers received, per request tag ("" untagged)
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def unintended(self) -> int:
        """Payments this server should never have been sent."""
        with self._lock:
            if self.kind == "again":
                return sum(n - 1 for n in self.payments.values() if n > 1)
            return sum(self.payments.values())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._call)
        return app

    async def _call(self, request: web.Request) -> web.Response:
        body = await request.read()
        paid = request.headers.get(PAYMENT_SIGNATURE_HEADER) or request.headers.get(X_PAYMENT_HEADER)
        with self._lock:
            self.calls += 1
            if paid:
                self.payments[tag_of(body.decode(errors="replace")) or ""] += 1
        response = web.json_response({"error": "payment required"}, status=402)
        response.headers[PAYMENT_REQUIRED_HEADER] = self._header(str(request.url))
        return response

    def _header(self, url: str) -> str:
        kind, fair = self.kind, self.fair
        if kind == "not-base64":
            return "%%% not base64 %%%"
        if kind == "not-json":
            return base64.b64encode(b"\xff\xfe{{{").decode()
        if kind == "wrong-types":
            doc = {"x402Version": 2, "accepts": [{"scheme": ["exact"], "network": 8453, "amount": {"n": 1},
                                                  "payTo": None, "asset": True, "maxTimeoutSeconds": "soon"}],
                   "resource": {"url": url}}
            return base64.b64encode(json.dumps(doc).encode()).decode()
        if kind == "digits":
            doc = {"x402Version": 2, "accepts": [{**fair.model_dump(mode="json", by_alias=True),
                                                  "amount": "\u0663\u0660\u0660\u0660"}], "resource": {"url": url}}
            return base64.b64encode(json.dumps(doc, ensure_ascii=False).encode()).decode()
        all_changes: dict[str, dict[str, Any]] = {
            "price": {"amount": str(10**12)},
            "payto": {"pay_to": FOREIGN},
            "asset": {"asset": FOREIGN},
            "network": {"network": "eip155:1"},
            "domain": {"extra": {"name": "USD Coin", "version": "2"}},
            "validity": {"max_timeout_seconds": YEAR},
        }
        changes = all_changes.get(kind, {})
        accepts = [] if kind == "no-offers" else [fair.model_copy(update=changes)]
        required = PaymentRequired(x402_version=2, error="payment required", accepts=accepts,
                                   resource=ResourceInfo(url=url, description="model call",
                                                         mime_type="application/json"))
        return encode_payment_required_header(required)
