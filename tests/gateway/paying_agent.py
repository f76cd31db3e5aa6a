"""An agent as its own process, for tests that kill it mid-call: one `GatewayClient.chat` on a ledger file,
its reply printed as JSON. The payment key comes from ORACLE_AGENT_PAYMENT_KEY (hex), never argv.

    python -m tests.gateway.paying_agent URL LEDGER NETWORK ASSET PAY_TO RPC_URL CALL_KEY PROMPT
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from oracle.client import GatewayClient
from oracle.config import X402Pin

KEY_ENV = "ORACLE_AGENT_PAYMENT_KEY"


async def main(url: str, ledger: str, network: str, asset: str, pay_to: str, rpc_url: str, call_key: str,
               prompt: str) -> None:
    pin = X402Pin(network=network, asset=asset, pay_to=pay_to)
    key = bytes.fromhex(os.environ[KEY_ENV].removeprefix("0x"))
    async with GatewayClient.open(url, key, ledger, pin=pin, max_payment=5_000, budget_total=100_000,
                                  rpc_url=rpc_url) as gateway:
        reply = await gateway.chat([{"role": "user", "content": prompt}], max_tokens=64, key=call_key)
    print(json.dumps({"content": reply.content, "paid": reply.paid}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:9]))
