"""Timeouts, retries and a circuit breaker in front of any PaymentGateway.

The breaker follows opossum's semantics: a call slower than ``timeout`` is a failure; within
the rolling window, once at least ``volume`` calls have finished and the failure share reaches
``error_threshold``, it opens; ``reset_seconds`` later it half-opens and lets one trial call
through, which closes it on success or reopens it on failure. pybreaker (used for search)
only counts consecutive failures and is synchronous, hence this small class.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from enum import IntEnum
from typing import TypeVar

import structlog
from prometheus_client import Gauge
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    GatewayServerError,
    GatewayUnreachable,
    PaymentError,
    PaymentErrored,
    PaymentGateway,
    PaymentNotAttempted,
    PaymentTransientError,
    PaymentUnavailable,
)

T = TypeVar("T")
log = structlog.get_logger("emporium.payment")

# Each server process has its own breaker: with several, each reports its state (pid).
CIRCUIT_BREAKER_STATE = Gauge(
    "circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open",
    ["service"],
    multiprocess_mode="liveall",
)


class BreakerState(IntEnum):
    closed = 0
    open = 1
    half_open = 2


class CircuitOpen(PaymentNotAttempted):
    """Rejected without calling the gateway because the breaker is open."""


def _unavailable(op: str, *, reached: bool, answered: bool = False) -> PaymentUnavailable:
    """``reached``: an attempt may have got to the gateway; ``answered``: every one that
    did was answered with a server error, so none is under way there."""
    kind = PaymentErrored if answered else PaymentUnavailable
    return (kind if reached else PaymentNotAttempted)(f"payment gateway unavailable during {op}")


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, PaymentTransientError | TimeoutError)


def is_business_error(exc: BaseException) -> bool:
    """Declines and invalid requests are answers from a healthy gateway, not failures."""
    return isinstance(exc, PaymentError) and not isinstance(
        exc, PaymentTransientError | PaymentUnavailable
    )


class CircuitBreaker:
    def __init__(
        self,
        *,
        service: str = "payment_gateway",
        timeout: float = 30.0,
        error_threshold: float = 0.3,
        reset_seconds: float = 60.0,
        volume: int = 3,
        window_seconds: float = 10.0,
        error_filter: Callable[[BaseException], bool] = is_business_error,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.timeout = timeout
        self.error_threshold = error_threshold
        self.reset_seconds = reset_seconds
        self.volume = volume
        self.window_seconds = window_seconds
        self.error_filter = error_filter
        self._clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()  # (finished at, failed)
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._timer: asyncio.TimerHandle | None = None
        self._state = BreakerState.closed
        self._gauge = CIRCUIT_BREAKER_STATE.labels(service=service)
        self._gauge.set(BreakerState.closed)

    @property
    def state(self) -> BreakerState:
        # The timer normally half-opens; this also covers a loop that has gone away.
        if (
            self._state is BreakerState.open
            and self._clock() - self._opened_at >= self.reset_seconds
        ):
            self._transition(BreakerState.half_open)
        return self._state

    def retry_after(self) -> int | None:
        """Whole seconds until an open breaker lets a trial call through; None if not open."""
        if self.state is not BreakerState.open:
            return None
        return max(1, math.ceil(self.reset_seconds - (self._clock() - self._opened_at)))

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        state = self.state
        trial = state is BreakerState.half_open
        if state is BreakerState.open or (trial and self._trial_in_flight):
            raise CircuitOpen(f"{self.service} circuit breaker is open")
        if trial:
            self._trial_in_flight = True
        try:
            async with asyncio.timeout(self.timeout):
                result = await fn()
        except Exception as exc:
            self._record(failed=not self.error_filter(exc), trial=trial)
            raise
        finally:
            # Also on cancellation: a caller giving up must not wedge the half-open slot.
            if trial:
                self._trial_in_flight = False
        self._record(failed=False, trial=trial)
        return result

    def _record(self, *, failed: bool, trial: bool) -> None:
        if trial:
            if failed:
                self._open()
            else:
                self._close()
            return
        if self._state is not BreakerState.closed:
            return  # a straggler from before the breaker opened decides nothing
        now = self._clock()
        self._outcomes.append((now, failed))
        self._failures += failed
        while self._outcomes and self._outcomes[0][0] <= now - self.window_seconds:
            self._failures -= self._outcomes.popleft()[1]
        total = len(self._outcomes)
        if total >= self.volume and self._failures / total >= self.error_threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(self.reset_seconds, self._half_open)
        self._transition(BreakerState.open)

    def _half_open(self) -> None:
        self._timer = None
        if self._state is BreakerState.open:
            self._transition(BreakerState.half_open)

    def _close(self) -> None:
        self._cancel_timer()
        self._outcomes.clear()
        self._failures = 0
        self._transition(BreakerState.closed)

    def stop(self) -> None:
        """Drop the pending half-open timer, when its owner shuts down: the event loop
        may outlive the server (an embedding application, a test run)."""
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _transition(self, state: BreakerState) -> None:
        if state is not self._state:
            log.warning("circuit_breaker.state", service=self.service, state=state.name)
        self._state = state
        self._gauge.set(state)


class ResilientGateway:
    """Per attempt: breaker (with its timeout). Around it: tenacity retries, with jittered
    exponential backoff, only on transient errors. The gateway's idempotency keys make a
    retried authorization safe; capture, void and full refunds are idempotent there too.

    The attempts of one call share the breaker's timeout as their total budget: the caller
    gets an answer after about one timeout, not one per attempt, so a hanging gateway is
    tried once while quick transient errors are still retried."""

    def __init__(
        self,
        inner: PaymentGateway,
        breaker: CircuitBreaker | None = None,
        *,
        attempts: int = 3,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.breaker = breaker or CircuitBreaker()
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    async def aclose(self) -> None:
        self.breaker.stop()
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        # Nearly every call succeeds at once: the first attempt runs without tenacity's
        # per-call machinery (it cost more than the in-process gateway call itself).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.breaker.timeout
        try:
            return await self.breaker.call(fn)
        except (PaymentTransientError, TimeoutError) as exc:
            if not retry or self.attempts < 2:
                raise _unavailable(
                    op,
                    reached=not isinstance(exc, GatewayUnreachable),
                    answered=isinstance(exc, GatewayServerError),
                ) from exc
            first = exc
        return await self._retry(op, fn, first, deadline)

    async def _retry(
        self, op: str, fn: Callable[[], Awaitable[T]], first: Exception, deadline: float
    ) -> T:
        """The remaining attempts, after ``first`` failed, until the event loop's clock
        reaches ``deadline``; tenacity counts that failure as its own first attempt, so
        backoff and logging are as for any other."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("payment.retry", op=op, attempt=state.attempt_number, error=repr(exc))

        left = deadline - asyncio.get_running_loop().time()
        retrying = AsyncRetrying(
            # No attempt starts once the backoff before it would reach the deadline.
            stop=stop_after_attempt(self.attempts) | stop_before_delay(left),
            wait=wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        pending: Exception | None = first
        # Whether any attempt may have got to the gateway: only if none did is it certain
        # that nothing was charged.
        reached = not isinstance(first, GatewayUnreachable)
        # Whether one that got there may still be under way there (it got no answer).
        in_doubt = reached and not isinstance(first, GatewayServerError)

        async def tracked() -> T:
            nonlocal reached, in_doubt
            try:
                return await fn()
            except BaseException as exc:  # a timeout cancels the call mid-request
                if not isinstance(exc, GatewayUnreachable):
                    reached = True
                    in_doubt = in_doubt or not isinstance(exc, GatewayServerError)
                raise

        try:
            async for attempt in retrying:
                with attempt:
                    if pending is not None:
                        failed, pending = pending, None
                        raise failed
                    # Cut short at the deadline, the attempt ends as a caller giving up
                    # does: the breaker counts no outcome for it, and it ends in a timeout.
                    async with asyncio.timeout_at(deadline):
                        return await self.breaker.call(tracked)
        except CircuitOpen as exc:
            if reached:
                raise _unavailable(op, reached=True, answered=not in_doubt) from exc
            raise
        except (PaymentTransientError, TimeoutError) as exc:
            raise _unavailable(op, reached=reached, answered=not in_doubt) from exc
        raise PaymentUnavailable(f"payment gateway unavailable during {op}")  # pragma: no cover

    async def authorize(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        return await self._call(
            "authorize",
            lambda: self.inner.authorize(
                idempotency_key=idempotency_key, amount=amount, currency=currency, card=card
            ),
        )

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        return await self._call(
            "charge",
            lambda: self.inner.charge(
                idempotency_key=idempotency_key, amount=amount, currency=currency, card=card
            ),
        )

    async def capture(self, payment_id: str) -> GatewayPayment:
        return await self._call("capture", lambda: self.inner.capture(payment_id))

    async def void(self, payment_id: str) -> GatewayPayment:
        return await self._call("void", lambda: self.inner.void(payment_id))

    async def refund(self, payment_id: str, amount: Decimal | None = None) -> GatewayPayment:
        # A partial refund carries no idempotency key: retrying one could refund twice.
        return await self._call(
            "refund", lambda: self.inner.refund(payment_id, amount), retry=amount is None
        )

    async def get_by_idempotency_key(self, idempotency_key: str) -> GatewayPayment | None:
        return await self._call(
            "get_by_idempotency_key", lambda: self.inner.get_by_idempotency_key(idempotency_key)
        )

    async def look_up(self, idempotency_key: str) -> GatewayPayment | None:
        """One read of the payment under the key, let through an open breaker, neither
        retried nor counted: a read takes no money, and it settles at once a charge the
        gateway answered only with errors (which may well have opened the breaker). The
        caller bounds it with a short timeout."""
        return await self.inner.get_by_idempotency_key(idempotency_key)


async def look_up(gateway: PaymentGateway, idempotency_key: str) -> GatewayPayment | None:
    """``gateway``'s payment under the key, asked once (past the breaker of a
    ResilientGateway: :meth:`ResilientGateway.look_up`)."""
    once = getattr(gateway, "look_up", None)
    if once is None:
        return await gateway.get_by_idempotency_key(idempotency_key)
    found: GatewayPayment | None = await once(idempotency_key)
    return found


def gateway_retry_after(gateway: object) -> int | None:
    """Seconds until the gateway's open breaker lets calls through again; None if it
    is not open (or the gateway has no breaker)."""
    breaker = getattr(gateway, "breaker", None)
    return breaker.retry_after() if isinstance(breaker, CircuitBreaker) else None
