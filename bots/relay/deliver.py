"""Sending an endpoint's messages: one attempt (`Sender`), what its outcome means (`judge`), and the loop
that sends an endpoint's due messages in outbox order (`EndpointWorker`).

Each endpoint has a worker of its own, so a slow or failing receiver holds up only itself. A worker
sends one message at a time, oldest first, so a receiver sees results in chain order while it answers;
a message waiting for its retry is passed over and never holds up the ones after it (only a later
message about the same settlement waits for it: a retraction never overtakes what it retracts).

    2xx                            delivered
    408, 429, 5xx, no answer       retried: 1 s doubling to 1 h, with a little jitter (or after the
                                   receiver's Retry-After: 1 s to 1 h), for max_retry_hours; then dead
    3xx                            dead at once: redirects are not followed
    any other status               dead at once: the receiver refused it
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time

import aiohttp

from bots.relay.config import EndpointSettings
from bots.relay.outbox import Attempt, Message, MessageState, Outbox
from bots.relay.signing import signature_header

log = logging.getLogger("bots.relay")

FIRST_RETRY = 1.0  # seconds
MAX_RETRY_DELAY = 3_600.0
JITTER = 0.1  # a retry comes up to this fraction later, so a receiver back up is not hit by all at once
SNIPPET = 200  # bytes of a refusal's body kept as its error


class Sender:
    """Posts a message to one endpoint, signed with its keys; never follows a redirect."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: EndpointSettings, keys: list[bytes]) -> None:
        self.session = session
        self.endpoint = endpoint
        self._keys = keys

    async def attempt(self, message: Message) -> Attempt:
        started = time.time()
        timestamp = int(started)
        headers = {"content-type": "application/json", "user-agent": "oracle-relay",
                   "webhook-id": message.webhook_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature_header(self._keys, message.webhook_id, timestamp, message.body)}
        try:
            async with self.session.post(self.endpoint.url, data=message.body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout)) as reply:
                snippet = await reply.content.read(SNIPPET)
                status, location = reply.status, reply.headers.get("Location")
                retry_after = _retry_after(reply.headers.get("Retry-After"), started)
        except TimeoutError:
            return Attempt(started, None, f"no answer within {self.endpoint.timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(started, None, " ".join(f"no answer: {type(exc).__name__}: {exc}".split()))
        if 200 <= status < 300:
            return Attempt(started, status, "")
        text = " ".join(snippet.decode(errors="replace").split())  # one log line, whatever the body holds
        said = f"answered {status}" + (f": {text}" if text else "")
        if 300 <= status < 400:
            said += f" (a redirect to {location})" if location else " (a redirect)"
        return Attempt(started, status, said, retry_after)


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date (None when neither)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    return None


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones."""
    return min(MAX_RETRY_DELAY, FIRST_RETRY * 2.0 ** min(attempts - 1, 32) * random.uniform(1.0, 1.0 + JITTER))


def judge(message: Message, attempt: Attempt, max_retry_hours: float, now: float) -> tuple[MessageState, float, str]:
    """What an attempt means for its message: its next state, its next attempt time, and the error kept."""
    status = attempt.status
    if status is not None and 200 <= status < 300:
        return MessageState.DELIVERED, now, ""
    if status is not None and 300 <= status < 400:
        return MessageState.DEAD, now, (f"{attempt.error}; redirects are not followed: set the endpoint's url to "
                                        f"where the receiver is")
    if status is not None and status < 500 and status not in (408, 429):
        return MessageState.DEAD, now, f"{attempt.error}; the receiver refused it (a {status} is not retried)"
    attempts = message.attempts + 1
    give_up = (message.first_attempt_at or attempt.started) + max_retry_hours * 3_600
    if now >= give_up:
        return MessageState.DEAD, now, (f"{attempt.error}; gave up: still failing after {attempts} attempts over "
                                        f"{max_retry_hours:g} h (max_retry_hours)")
    # a Retry-After of 0 would make a tight loop of a receiver that always says so: 1 s at least
    delay = (backoff(attempts) if attempt.retry_after is None
             else min(max(attempt.retry_after, FIRST_RETRY), MAX_RETRY_DELAY))
    return MessageState.PENDING, min(now + delay, give_up), attempt.error


async def deliver(outbox: Outbox, sender: Sender, message: Message) -> Message:
    """One attempt at `message`, its outcome recorded and logged in one line."""
    attempt = await sender.attempt(message)
    now = time.time()
    state, next_at, error = judge(message, attempt, sender.endpoint.max_retry_hours, now)
    recorded = outbox.record(message, Attempt(attempt.started, attempt.status, error), state, next_at)
    log_outcome(recorded, now - attempt.started, next_at - now)
    return recorded


def log_outcome(message: Message, took: float, retry_in: float = 0.0) -> None:
    fields = {"endpoint": message.endpoint, "webhook_id": message.webhook_id, "outbox_id": message.id,
              "event_id": message.event_id, "kind": message.kind, "state": message.state,
              "attempts": message.attempts, "status": message.last_status}
    what = f"{message.kind} {message.webhook_id} ({message.event_id}) to {message.endpoint}"
    if message.state == MessageState.DELIVERED:
        log.info("%s: delivered (%s) at attempt %d in %.2f s", what, message.last_status, message.attempts, took,
                 extra={"fields": fields})
    elif message.state == MessageState.PENDING:
        log.warning("%s: attempt %d failed: %s; next in %.1f s", what, message.attempts, message.last_error,
                    retry_in, extra={"fields": {**fields, "error": message.last_error}})
    else:
        log.error("%s: dead after %d attempt(s): %s (see: python -m bots.relay dead-letters)", what,
                  message.attempts, message.last_error, extra={"fields": {**fields, "error": message.last_error}})


class EndpointWorker:
    """Sends one endpoint's due messages until `stop` is set; a message in flight is finished first."""

    def __init__(self, outbox: Outbox, sender: Sender) -> None:
        self.outbox = outbox
        self.sender = sender
        self.name = sender.endpoint.name
        self.wake = asyncio.Event()  # set when a message is added for this endpoint, and at stop

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            message = self.outbox.next_due(self.name, time.time())
            if message is not None:
                await deliver(self.outbox, self.sender, message)
                continue
            due = self.outbox.next_attempt_at(self.name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else max(0.0, due - time.time())):
                    await self.wake.wait()
