"""The operator's view of dead messages: listing them, and sending them again once a receiver is fixed.

A resend is one attempt now, with the same webhook id and body (a receiver that took it before drops it
as a repeat) and a fresh timestamp and signature; a failure leaves the message dead with its new error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import aiohttp

from bots.relay.config import RelayConfig
from bots.relay.deliver import Sender, judge
from bots.relay.outbox import Attempt, Message, MessageState, Outbox
from bots.relay.signing import load_keys


def describe(message: Message) -> str:
    """One dead message in two lines: what it is and where it was going, then its last error."""
    data = json.loads(message.body).get("data", {})
    return (f"{message.id}\t{message.endpoint}\t{message.webhook_id}\tattempts {message.attempts}\t"
            f"last status {message.last_status if message.last_status is not None else '-'}\t"
            f"{message.kind} {message.event_id} (block {data.get('block_number', '?')})\n"
            f"\terror: {message.last_error}")


async def resend(config: RelayConfig, outbox: Outbox, messages: list[Message], report: Callable[[str], None]) -> int:
    """One attempt at each of `messages`, each outcome reported; how many are still dead. The secrets of
    the endpoints involved are read first (ConfigError naming a variable that is missing or malformed)."""
    keys = {e.name: load_keys(e.name, e.secret_env) for e in config.endpoints
            if any(m.endpoint == e.name for m in messages)}
    failed = 0
    async with aiohttp.ClientSession() as session:
        for message in messages:
            endpoint = config.endpoint(message.endpoint)
            if endpoint is None:
                report(f"{message.id}\t{message.endpoint}\t{message.webhook_id}\tnot sent: no endpoint "
                       f"{message.endpoint!r} in the config any more (add it back to send this message)")
                failed += 1
                continue
            attempt = await Sender(session, endpoint, keys[endpoint.name]).attempt(message)
            now = time.time()
            # no retry window here: a retryable failure is one more failed attempt, like any other
            state, _, error = judge(message, attempt, float("inf"), now)
            state = MessageState.DELIVERED if state == MessageState.DELIVERED else MessageState.DEAD
            recorded = outbox.record(message, Attempt(attempt.started, attempt.status, error), state, now)
            if recorded.state == MessageState.DELIVERED:
                report(f"{message.id}\t{message.endpoint}\t{message.webhook_id}\tdelivered ({attempt.status})")
            else:
                failed += 1
                report(f"{message.id}\t{message.endpoint}\t{message.webhook_id}\tstill dead: {error}")
    return failed
