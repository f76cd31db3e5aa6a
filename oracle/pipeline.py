"""One request's lifecycle, from a confirmed log to a signed response handed to the TxManager.

    confirmed -> accepted | refused(reason)
    accepted  -> answered (router) -> signed -> submitted (TxManager) -> fulfilled
    refused   -> answered (failure status and reason) -> signed -> submitted

Each step writes its outcome and commits before the side effect the next step allows, so a crash
anywhere resumes from the store: the router replays finished attempts, a stored answer is signed
again only if no signature was stored, a stored signature is re-submitted as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from oracle.chain.gas import response_gas_bound
from oracle.chain.signer import ResponseSigner
from oracle.chain.tx import ReadyResponse, TxManager
from oracle.config import ChainSettings, PipelineSettings
from oracle.events import DecodedParams, EventDecodeError, decode_params
from oracle.protocol import (
    Commitment,
    InvalidModelSpec,
    ReasonCode,
    Response,
    Status,
    model_used,
    parse_model_spec,
)
from oracle.results import ResultError, check_answerable
from oracle.router import Answer, Router, RouteRequest
from oracle.router.receipts import canonical_json, receipt_hash
from oracle.store import Requests, RequestState, StoredRequest

log = logging.getLogger(__name__)
R = RequestState

WORK_STATES = (R.CONFIRMED, R.ACCEPTED, R.REFUSED, R.ANSWERED, R.SIGNED)
NO_MODEL = b"\0" * 32
SIGNED_LOOK_SECONDS = 1.0


class Pipeline:
    def __init__(self, chain: ChainSettings, settings: PipelineSettings, requests: Requests, router: Router,
                 signer: ResponseSigner, txm: TxManager, gas_price: Callable[[], int],
                 clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.settings = settings
        self.requests = requests
        self.router = router
        self.signer = signer
        self.txm = txm
        self.gas_price = gas_price  # current maxFeePerGas estimate, wei
        self.clock = clock
        self._wake = asyncio.Event()
        self._active: set[str] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        # Slots freed before the next page is read: one page per few completions, not one per completion.
        self._refill = max(1, settings.concurrency // 8)
        self._next_signed_look = 0.0
        self._stopping = False
        self.intake_paused = ""  # why the operator paused the intake
        self._cooldown: dict[str, float] = {}  # request key -> when to try again after an unexpected error

    def wake(self) -> None:
        self._wake.set()

    def pause_intake(self, reason: str) -> None:
        """Start no new request (they are still recorded); those already being answered go on."""
        self.intake_paused = reason

    def resume_intake(self) -> None:
        self.intake_paused = ""
        self._wake.set()

    def stop(self) -> None:
        """Take no new work; requests in flight finish their current step."""
        self._stopping = True
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._active)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            while not self._stopping:
                self._wake.clear()
                work = self._work()
                for request in work:
                    await self._slots.acquire()
                    self._active.add(request.key)
                    tasks.create_task(self._process(request))
                if work:
                    await asyncio.sleep(0)  # a full page may mean more is waiting: look again at once
                    continue
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def _work(self) -> list[StoredRequest]:
        """The next requests to move, oldest first, as many as there are free slots: a page of keys is
        looked over and only the rows to start are read."""
        free = self.settings.concurrency - len(self._active)
        if free <= 0:
            return []  # (a request that finishes wakes the loop)
        new_work = self.txm.accepting_new_work and not self.intake_paused
        states: tuple[RequestState, ...] = WORK_STATES if new_work else WORK_STATES[1:]
        now = time.monotonic()
        self._cooldown = {k: t for k, t in self._cooldown.items() if t > now}
        # Signed responses are the transaction manager's until it lets one go (a failed transaction, a
        # restart): they are looked for once a second, not on every pass over a queue of them it holds.
        if now < self._next_signed_look:
            states = tuple(s for s in states if s != R.SIGNED)
        else:
            self._next_signed_look = now + SIGNED_LOOK_SECONDS
        # The page reaches past requests that are active, cooling down or held by the transaction manager
        # (signed, waiting to be sent), so they cannot starve the rest.
        page = free + len(self._active) + len(self._cooldown) + (self.txm.holding if R.SIGNED in states else 0)
        keys = self.requests.keys_in_state(self.chain.chain_id, states, limit=page)
        start = [k for k in keys if k not in self._active and not self.txm.carries(k) and k not in self._cooldown]
        if len(start) > free and R.SIGNED in states:
            self._next_signed_look = 0.0  # more than the free slots could take: look again on the next pass
        return self.requests.get_many(start[:free])

    async def _process(self, request: StoredRequest) -> None:
        try:
            await self.advance(request)
        except Exception:  # one request's bug must not stop the others; it is logged and retried later
            log.exception("chain %s: request %s failed in state %s", self.chain.name, request.key, request.state)
            self._cooldown[request.key] = time.monotonic() + 5.0
        finally:
            self._active.discard(request.key)
            self._slots.release()
            if self.settings.concurrency - len(self._active) >= self._refill:
                self._wake.set()  # slots are free: a backlog the last page did not reach is looked at now

    # ------------------------------------------------------------ the steps

    async def advance(self, r: StoredRequest) -> None:
        """Move one request as far as it can go now."""
        try:
            decoded = decode_params(r.params)
        except EventDecodeError as exc:
            # (params that do not decode fail the first time they are read: at confirmed)
            self.requests.transition(r.key, [R.CONFIRMED], R.EXPIRED, reason=int(ReasonCode.INTERNAL_ERROR),
                                     detail=str(exc))
            await self.requests.commit()
            return
        # Before a model is asked: past its deadline, nothing is spent on it. (A refused one is answered
        # without a model; past its deadline it expires at sending, like any signed response.)
        if r.state in (R.CONFIRMED, R.ACCEPTED) and self.clock() > r.deadline:
            self.requests.transition(r.key, [R.CONFIRMED, R.ACCEPTED], R.EXPIRED,
                                     detail="deadline passed before it was answered")
            await self.requests.commit()
            return
        state = r.state
        if (state == R.CONFIRMED and r.signature is not None and r.receipt_hash is not None
                and self.requests.transition(r.key, [R.CONFIRMED], R.SIGNED)):
            state = R.SIGNED  # re-included after a reorg with the same content: its signed answer stands
        if state == R.CONFIRMED:
            state = self._check(r, decoded)  # committed with the next step's first write
        if state in (R.ACCEPTED, R.REFUSED):
            if not await self._answer(r, decoded, state):
                return  # the request moved while it was being answered (reorg, settled on-chain)
            state = R.ANSWERED
        response: Response | None = None
        if state == R.ANSWERED:
            fresh = self.requests.get(r.key)
            assert fresh is not None
            response = self._sign(fresh, decoded)  # committed before the TxManager sends anything
            if response is None:
                return
            state = R.SIGNED
        if state == R.SIGNED:
            fresh = self.requests.get(r.key)
            assert fresh is not None
            if fresh.signature is None:  # reset by a reorg while it was in flight: the next pass answers it
                return
            if self.clock() > fresh.deadline:
                self.requests.transition(r.key, [R.SIGNED], R.EXPIRED, detail="deadline passed before it could be sent")
                await self.requests.commit()
                return
            self.txm.submit(ReadyResponse(fresh.key, response or self._response(fresh, decoded),
                                          _commitment(fresh, decoded), fresh.signature, fresh.deadline))

    def _refuse(self, r: StoredRequest, reason: ReasonCode, detail: str) -> str:
        if not self.requests.transition(r.key, [R.CONFIRMED], R.REFUSED, reason=int(reason), detail=detail):
            return R.ROLLED_BACK  # moved meanwhile (by a reorg or a settlement): stop here
        log.info("chain %s: request %s refused: %s (%s)", self.chain.name, r.key, reason.name, detail,
                 extra=self._outcome(r.key, "refused", reason.name, detail))
        return R.REFUSED

    def _check(self, r: StoredRequest, d: DecodedParams) -> str:
        """confirmed -> accepted | refused(reason). Everything here is read from the untrusted request."""
        p = d.params
        if d.problems:
            return self._refuse(r, ReasonCode.INVALID_PROMPT, "; ".join(d.problems))
        try:
            p.prompt.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._refuse(r, ReasonCode.INVALID_PROMPT, f"prompt is not valid UTF-8 at byte {exc.start}")
        try:
            parse_model_spec(p.model_spec)
        except InvalidModelSpec as exc:
            return self._refuse(r, ReasonCode.INVALID_MODEL_SPEC, str(exc))
        try:
            check_answerable(p.result)  # result specs no answer could satisfy, before any model is asked
        except ResultError as exc:
            return self._refuse(r, ReasonCode.UNSUPPORTED, str(exc))
        if r.deadline - self.clock() < self.settings.deadline_margin:
            return self._refuse(r, ReasonCode.DEADLINE_TOO_SHORT,
                                f"less than {self.settings.deadline_margin:.0f} s left to answer and submit")
        fee_micro_usd, gas_micro_usd = self._fee_and_gas(r, d)
        model_micro_usd = self.router.estimate_cost(p) or 0
        if fee_micro_usd < gas_micro_usd + model_micro_usd:
            return self._refuse(r, ReasonCode.FEE_TOO_LOW,
                                f"fee {fee_micro_usd} micro-USD is below gas {gas_micro_usd} + model "
                                f"{model_micro_usd} micro-USD")
        if not self.requests.transition(r.key, [R.CONFIRMED], R.ACCEPTED):
            return R.ROLLED_BACK
        return R.ACCEPTED

    async def _answer(self, r: StoredRequest, d: DecodedParams, state: str) -> bool:
        """accepted -> answered via the router; refused -> answered with the failure it was refused for."""
        if state == R.REFUSED:
            fresh = self.requests.get(r.key)
            assert fresh is not None
            answer = Answer(Status.FAILURE, ReasonCode(fresh.reason), b"", (), fresh.reason_detail,
                            {"refused": fresh.reason_detail})
        else:
            budget = r.deadline - self.settings.deadline_margin - self.clock()
            fee_micro_usd, gas_micro_usd = self._fee_and_gas(r, d)
            route = RouteRequest(r.key, r.request_id, r.requester, d.params, d.params.prompt.decode("utf-8"),
                                 d.params_hash, max(0, fee_micro_usd - gas_micro_usd))
            try:
                async with asyncio.timeout(max(budget, 0.001)):
                    # The router keeps local time; the deadline is on the chain's clock.
                    answer = await self.router.answer(route, time.time() + budget)
            except TimeoutError:
                answer = Answer(Status.FAILURE, ReasonCode.DEADLINE_TOO_SHORT, b"", (),
                                "no answer before the deadline", {})
            if answer.status == Status.FAILURE:  # refused by the router or failed: once, as the pipeline's own
                log.info("chain %s: request %s answered with failure %s (%s)", self.chain.name, r.key,
                         answer.reason.name, answer.detail,
                         extra=self._outcome(r.key, "failed", answer.reason.name, answer.detail))
            else:
                log.info("chain %s: request %s answered by %s", self.chain.name, r.key, ", ".join(answer.model_ids),
                         extra=self._outcome(r.key, "answered", "", "", models=list(answer.model_ids)))
        body = canonical_json(self._receipt(r, d, answer))
        return self.requests.store_answer(
            r.key, status=int(answer.status), reason=int(answer.reason), result=answer.result,
            model_used=model_used(answer.model_ids) if answer.model_ids else NO_MODEL,
            receipt_hash=receipt_hash(body), receipt_body=body, detail=answer.detail,
        )

    def _outcome(self, key: str, outcome: str, reason: str, detail: str, **more: Any) -> dict[str, Any]:
        """A request's outcome line's fields (`extra=`): what log collectors filter and count by."""
        return {"fields": {"chain": self.chain.name, "chain_id": self.chain.chain_id, "request": key,
                           "outcome": outcome, "reason": reason, "detail": detail, **more}}

    def _fee_and_gas(self, r: StoredRequest, d: DecodedParams) -> tuple[int, int]:
        """The escrowed fee and the gas of answering (the largest response the request allows, sent
        alone, calldata floor included), both in micro-USD at the chain's configured price."""
        fee_micro_usd = r.fee * self.chain.native_price_micro_usd // 10**18
        gas = response_gas_bound(r.request_id, _commitment(r, d), self.chain.gas.fulfill_gas_overhead)
        gas_wei = gas * self.gas_price()
        return fee_micro_usd, -(-gas_wei * self.chain.native_price_micro_usd // 10**18)

    def _receipt(self, r: StoredRequest, d: DecodedParams, answer: Answer) -> dict[str, Any]:
        p = d.params
        return {
            "version": 1,
            "request": {
                "key": r.key, "chain_id": r.chain_id, "oracle": r.oracle, "request_id": r.request_id,
                "requester": r.requester, "nonce": r.nonce, "fee_wei": r.fee, "block_number": r.block_number,
                "callback": p.callback, "callback_gas_limit": p.callback_gas_limit, "deadline": p.deadline,
                "max_tokens": p.max_tokens, "temperature": p.temperature, "seed": p.seed,
                "model_spec": p.model_spec, "prompt": p.prompt,
                "result": {"type": p.result.kind.name.lower(), "max_bytes": p.result.max_bytes,
                           "min": p.result.min, "max": p.result.max, "labels": list(p.result.labels),
                           "abi_type": p.result.abi_type},
            },
            "router": answer.receipt,
            "final": {"status": answer.status.name.lower(), "reason": answer.reason.name.lower(),
                      "detail": answer.detail, "models": sorted(answer.model_ids), "result": answer.result,
                      "result_sha256": hashlib.sha256(answer.result).hexdigest()},
            "native_price_micro_usd": self.chain.native_price_micro_usd,
        }

    def _response(self, r: StoredRequest, d: DecodedParams) -> Response:
        assert r.receipt_hash is not None and r.model_used is not None
        return Response(r.request_id, _commitment(r, d).hash(), Status(r.status), ReasonCode(r.reason),
                        r.result or b"", r.model_used, r.receipt_hash)

    def _sign(self, r: StoredRequest, d: DecodedParams) -> Response | None:
        """answered -> signed; the signed response, or None if the request moved meanwhile."""
        response = self._response(r, d)
        if not self.requests.store_signature(r.key, self.signer.sign_response(response)):
            return None
        return response


def _commitment(r: StoredRequest, d: DecodedParams) -> Commitment:
    return Commitment.of(r.requester, r.fee, d.params, d.params_hash)
