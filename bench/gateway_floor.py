"""The floor the gateway is measured against: the x402 SDK's own resource server on aiohttp, in front of a
model server. A paid chat is the irreducible work: decode the PAYMENT-SIGNATURE header, verify it through
the facilitator, forward the body to the model server, answer with its reply. Nothing is priced, stored,
reserved, limited, routed or settled; a payment may be used twice. It exists to be timed.

    python -m bench.gateway_floor --facilitator URL --model URL --network eip155:31337 --asset 0x... \
        --pay-to 0x... --price 1200
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
from aiohttp import web
from x402 import x402ResourceServer
from x402.http.utils import decode_payment_signature_header, encode_payment_required_header
from x402.mechanisms.evm.exact.register import register_exact_evm_server
from x402.schemas import AssetAmount, PaymentPayload, ResourceConfig, ResourceInfo

from oracle.x402.facilitator import FacilitatorHttp


class SdkPaywall:
    def __init__(self, session: aiohttp.ClientSession, args: argparse.Namespace) -> None:
        self.session = session
        self.model_url = args.model.rstrip("/") + "/chat/completions"
        self.server = x402ResourceServer(FacilitatorHttp(args.facilitator, session))
        register_exact_evm_server(self.server, args.network)
        self.args = args

    async def start(self) -> None:
        await asyncio.to_thread(self.server.initialize)
        a = self.args
        price = AssetAmount(amount=str(a.price), asset=a.asset, extra={"name": "Test USD", "version": "2"})
        (self.requirements,) = self.server.build_payment_requirements(ResourceConfig(
            scheme="exact", pay_to=a.pay_to, price=price, network=a.network, max_timeout_seconds=120))

    async def chat(self, request: web.Request) -> web.Response:
        raw = await request.read()
        header = request.headers.get("PAYMENT-SIGNATURE")
        if not header:
            return await self._required(request, "payment required")
        try:
            payload = decode_payment_signature_header(header)
        except Exception as exc:
            return await self._required(request, f"invalid payment: {type(exc).__name__}")
        if not isinstance(payload, PaymentPayload):
            return await self._required(request, "x402 v2 only")
        verified = await self.server.verify_payment(payload, self.requirements)
        if not verified.is_valid:
            return await self._required(request, str(verified.verify.invalid_reason))
        async with self.session.post(self.model_url, data=raw, headers={"Content-Type": "application/json"}) as reply:
            body = await reply.read()
            return web.Response(status=reply.status, body=body, content_type="application/json")

    async def _required(self, request: web.Request, error: str) -> web.Response:
        required = await self.server.create_payment_required_response(
            [self.requirements], ResourceInfo(url=str(request.url), description="model call",
                                              mime_type="application/json"), error=error)
        return web.json_response({"error": error}, status=402,
                                 headers={"PAYMENT-REQUIRED": encode_payment_required_header(required)})


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        paywall = SdkPaywall(session, args)
        await paywall.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", paywall.chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await stop.wait()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facilitator", required=True)
    parser.add_argument("--model", required=True, help="the model server's OpenAI base URL (…/v1)")
    parser.add_argument("--network", required=True)
    parser.add_argument("--asset", required=True)
    parser.add_argument("--pay-to", required=True)
    parser.add_argument("--price", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
