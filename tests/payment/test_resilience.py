"""Timeouts, retries and the circuit breaker, around the real in-process simulated gateway."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from emporium.config import Settings
from emporium.payment.factory import build_gateway
from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    GatewayServerError,
    PaymentDeclined,
    PaymentErrored,
    PaymentStatus,
    PaymentTransientError,
    PaymentUnavailable,
)
from emporium.payment.http import HttpGateway
from emporium.payment.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    ResilientGateway,
    look_up,
)
from emporium.payment.simulated import (
    CARD_DECLINED,
    CARD_HANG,
    CARD_OK,
    CARD_PROCESSING_ERROR,
    SimulatedGateway,
)


def card(number: str = CARD_OK) -> Card:
    return Card(number=number, exp="12/99", cvc="123")


def gauge() -> float | None:
    return REGISTRY.get_sample_value("circuit_breaker_state", {"service": "payment_gateway"})


def state(gw: ResilientGateway) -> BreakerState:
    return gw.breaker.state


def resilient(
    inner: SimulatedGateway,
    *,
    attempts: int = 3,
    volume: int = 100,
    error_threshold: float = 0.3,
    reset_seconds: float = 60.0,
    timeout: float = 30.0,
    window_seconds: float = 10.0,
) -> ResilientGateway:
    breaker = CircuitBreaker(
        volume=volume,
        error_threshold=error_threshold,
        reset_seconds=reset_seconds,
        timeout=timeout,
        window_seconds=window_seconds,
    )
    return ResilientGateway(
        inner,
        breaker,
        attempts=attempts,
        backoff_base=0.001,
        backoff_max=0.01,
    )


_n = 0


async def authorize(gw: ResilientGateway, number: str = CARD_OK) -> PaymentStatus:
    global _n
    _n += 1
    p = await gw.authorize(
        idempotency_key=f"key-{_n}", amount=Decimal("9.99"), currency="USD", card=card(number)
    )
    return p.status


async def test_transient_errors_are_retried_then_unavailable() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=3)
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(gw, CARD_PROCESSING_ERROR)
    # Each attempt was answered with a 5xx: none is under way at the gateway.
    assert type(exc_info.value) is PaymentErrored
    assert isinstance(exc_info.value.__cause__, GatewayServerError)
    assert inner.calls["authorize"] == 3
    assert inner.charges == 0


class FailsFirst(SimulatedGateway):
    """Answers its first authorization, and its first charge, with a transient error."""

    def _fail_first(self, op: str) -> None:
        if not self.calls[op]:
            self.calls[op] += 1
            raise PaymentTransientError("gateway_error")

    async def authorize(self, **kwargs: Any) -> GatewayPayment:
        self._fail_first("authorize")
        return await super().authorize(**kwargs)

    async def charge(self, **kwargs: Any) -> GatewayPayment:
        self._fail_first("charge")
        return await super().charge(**kwargs)


async def test_a_transient_error_then_success_charges_once() -> None:
    inner = FailsFirst()
    gw = resilient(inner, attempts=3)
    assert await authorize(gw) is PaymentStatus.authorized
    assert inner.calls["authorize"] == 2
    assert inner.charges == 1


async def test_a_charge_is_retried_and_taken_once() -> None:
    inner = FailsFirst()
    gw = resilient(inner, attempts=3)
    p = await gw.charge(idempotency_key="c-1", amount=Decimal("9.99"), currency="USD", card=card())
    assert p.status is PaymentStatus.captured
    assert (inner.calls["charge"], inner.calls["authorize"], inner.charges) == (2, 0, 1)


async def test_a_transient_error_is_not_retried_when_retries_are_off() -> None:
    inner = FailsFirst()
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(resilient(inner, attempts=1))
    assert isinstance(exc_info.value.__cause__, PaymentTransientError)
    assert inner.calls["authorize"] == 1
    assert inner.charges == 0


async def test_attempts_are_configurable() -> None:
    inner = SimulatedGateway()
    with pytest.raises(PaymentUnavailable):
        await authorize(resilient(inner, attempts=5), CARD_PROCESSING_ERROR)
    assert inner.calls["authorize"] == 5


async def test_declines_are_never_retried() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=3)
    with pytest.raises(PaymentDeclined) as exc_info:
        await authorize(gw, CARD_DECLINED)
    assert exc_info.value.code == "card_declined"
    assert inner.calls["authorize"] == 1


async def test_success_goes_straight_through() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner)
    assert gw.name == "simulated"
    p = await gw.authorize(idempotency_key="k", amount=Decimal("5.00"), currency="USD", card=card())
    assert p.status is PaymentStatus.authorized
    assert (await gw.capture(p.id)).status is PaymentStatus.captured
    assert (await gw.refund(p.id, Decimal("1.00"))).refunded_amount == Decimal("1.00")
    assert (await gw.refund(p.id)).status is PaymentStatus.refunded
    assert await gw.get_by_idempotency_key("k") == await inner.get_by_idempotency_key("k")
    p2 = await gw.authorize(
        idempotency_key="k2", amount=Decimal("5.00"), currency="USD", card=card()
    )
    assert (await gw.void(p2.id)).status is PaymentStatus.voided
    assert inner.calls["authorize"] == 2
    assert inner.charges == 2


async def test_a_hanging_gateway_gets_one_attempt_of_the_calls_timeout() -> None:
    inner = SimulatedGateway()  # would hang for 60 s
    gw = resilient(inner, attempts=3, timeout=0.5)
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(gw, CARD_HANG)
    assert type(exc_info.value) is PaymentUnavailable
    assert isinstance(exc_info.value.__cause__, TimeoutError)
    # The attempt used the call's whole timeout: no retry starts after it.
    assert inner.calls["authorize"] == 1
    assert inner.charges == 0
    # Quick transient errors still get every attempt within the same timeout.
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(gw, CARD_PROCESSING_ERROR)
    assert isinstance(exc_info.value.__cause__, PaymentTransientError)
    assert inner.calls["authorize"] == 4


class SlowErrorThenHang(SimulatedGateway):
    """Answers its first authorization with a transient error after ``slow`` seconds and
    hangs on the next ones until they are cancelled."""

    def __init__(self, slow: float, error: PaymentTransientError | None = None) -> None:
        super().__init__()
        self.slow = slow
        self.error = error or PaymentTransientError("gateway_error")
        self.cancelled = 0

    async def authorize(self, **kwargs: Any) -> GatewayPayment:
        self.calls["authorize"] += 1
        if self.calls["authorize"] == 1:
            await asyncio.sleep(self.slow)
            raise self.error
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("never set")  # pragma: no cover


async def test_a_retry_is_cut_short_at_the_calls_timeout() -> None:
    inner = SlowErrorThenHang(slow=0.5)
    # Two finished calls, both failed, would open this breaker.
    gw = resilient(inner, attempts=3, timeout=1.0, volume=2, error_threshold=1.0)
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(gw)
    assert type(exc_info.value) is PaymentUnavailable
    assert isinstance(exc_info.value.__cause__, TimeoutError)
    # The retry got what was left of the call's timeout, not a timeout of its own, and
    # no third attempt followed it.
    assert (inner.calls["authorize"], inner.cancelled, inner.charges) == (2, 1, 0)
    # Cut short by the caller's deadline, the retry counts as no outcome: one failure
    # has finished, too few to open the breaker.
    assert state(gw) is BreakerState.closed
    assert gauge() == 0


async def test_a_5xx_then_a_timeout_leaves_the_outcome_unknown() -> None:
    inner = SlowErrorThenHang(slow=0.1, error=GatewayServerError("gateway error 500"))
    gw = resilient(inner, attempts=3, timeout=1.0)
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(gw)
    # The second attempt may still be under way at the gateway: not PaymentErrored.
    assert type(exc_info.value) is PaymentUnavailable
    assert (inner.calls["authorize"], inner.cancelled) == (2, 1)


async def test_breaker_opens_at_threshold_fails_fast_half_opens_and_closes() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=3, error_threshold=0.3, reset_seconds=0.3)
    assert gauge() == 0
    assert await authorize(gw) is PaymentStatus.authorized
    assert await authorize(gw) is PaymentStatus.authorized
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)  # 1 of 3 failed: 33 % >= 30 %
    assert state(gw) is BreakerState.open
    assert gauge() == 1
    assert inner.calls["authorize"] == 3

    start = time.perf_counter()
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            await authorize(gw)
    assert time.perf_counter() - start < 0.05
    assert inner.calls["authorize"] == 3  # failing fast: the gateway was not called

    await asyncio.sleep(0.35)
    assert gauge() == 2  # half-opened by the timer, before any call
    assert state(gw) is BreakerState.half_open
    assert await authorize(gw) is PaymentStatus.authorized
    assert state(gw) is BreakerState.closed
    assert gauge() == 0
    assert inner.calls["authorize"] == 4


async def test_breaker_stays_closed_below_threshold() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=3, error_threshold=0.3)
    for _ in range(3):
        await authorize(gw)
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)  # 1 of 4: 25 %
    assert state(gw) is BreakerState.closed
    assert gauge() == 0
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)  # 2 of 5: 40 %
    assert state(gw) is BreakerState.open
    assert gauge() == 1


async def test_breaker_needs_volume_before_opening() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=3, error_threshold=0.3)
    for _ in range(2):
        with pytest.raises(PaymentUnavailable):
            await authorize(gw, CARD_PROCESSING_ERROR)
    assert state(gw) is BreakerState.closed
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)
    assert state(gw) is BreakerState.open
    assert inner.calls["authorize"] == 3


async def test_declines_are_not_failures() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=3, error_threshold=0.3)
    for _ in range(10):
        with pytest.raises(PaymentDeclined):
            await authorize(gw, CARD_DECLINED)
    assert state(gw) is BreakerState.closed
    assert inner.calls["authorize"] == 10


async def test_timeouts_are_failures() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=1, error_threshold=0.3, timeout=0.1)
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_HANG)
    assert state(gw) is BreakerState.open
    assert gauge() == 1


async def test_failures_leave_the_rolling_window() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=3, error_threshold=0.3, window_seconds=0.2)
    for _ in range(2):
        with pytest.raises(PaymentUnavailable):
            await authorize(gw, CARD_PROCESSING_ERROR)
    await asyncio.sleep(0.25)
    for _ in range(3):
        await authorize(gw)  # without the window, 2 failures of 3..5 calls would open it
    assert state(gw) is BreakerState.closed


async def test_retries_stop_when_the_breaker_opens() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=5, volume=2, error_threshold=0.5)
    with pytest.raises(PaymentUnavailable) as exc_info:
        await authorize(gw, CARD_PROCESSING_ERROR)
    assert inner.calls["authorize"] == 2
    # The two calls got to the gateway: not "not attempted", though the breaker refused the
    # third; both were answered with a 5xx, so none is under way there.
    assert type(exc_info.value) is PaymentErrored
    assert isinstance(exc_info.value.__cause__, CircuitOpen)
    # A look-up of the key goes past the open breaker, once: the gateway holds nothing.
    assert state(gw) is BreakerState.open
    assert await look_up(gw, f"key-{_n}") is None
    assert inner.calls["get_by_idempotency_key"] == 1
    assert state(gw) is BreakerState.open


async def test_failed_trial_reopens() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=1, reset_seconds=0.2)
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)
    assert gauge() == 1
    await asyncio.sleep(0.25)
    assert gauge() == 2
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)
    assert gauge() == 1
    with pytest.raises(CircuitOpen):
        await authorize(gw)
    await asyncio.sleep(0.25)
    assert gauge() == 2
    assert await authorize(gw) is PaymentStatus.authorized
    assert gauge() == 0
    assert inner.calls["authorize"] == 3


async def test_half_open_lets_one_trial_through() -> None:
    inner = SimulatedGateway(hang_seconds=0.2)
    gw = resilient(inner, attempts=1, volume=1, reset_seconds=0.1, timeout=2.0)
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)
    await asyncio.sleep(0.15)
    trial = asyncio.create_task(authorize(gw, CARD_HANG))  # slow but succeeds
    await asyncio.sleep(0.05)
    with pytest.raises(CircuitOpen):
        await authorize(gw)
    assert await trial is PaymentStatus.authorized
    assert state(gw) is BreakerState.closed
    assert inner.calls["authorize"] == 2


async def test_cancelled_trial_frees_the_half_open_slot() -> None:
    inner = SimulatedGateway()
    gw = resilient(inner, attempts=1, volume=1, reset_seconds=0.1, timeout=5.0)
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)
    await asyncio.sleep(0.15)
    trial = asyncio.create_task(authorize(gw, CARD_HANG))
    await asyncio.sleep(0.05)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert state(gw) is BreakerState.half_open
    assert await authorize(gw) is PaymentStatus.authorized
    assert state(gw) is BreakerState.closed


def test_defaults() -> None:
    breaker = CircuitBreaker()
    assert (breaker.timeout, breaker.error_threshold, breaker.reset_seconds, breaker.volume) == (
        30.0,
        0.3,
        60.0,
        3,
    )
    assert breaker.window_seconds == 10.0
    gw = ResilientGateway(SimulatedGateway(), breaker)
    assert (gw.attempts, gw.backoff_base, gw.backoff_max) == (3, 0.1, 2.0)


async def test_factory_in_process_by_default() -> None:
    settings = Settings(_env_file=None, payment_breaker_volume=7, payment_timeout_seconds=4.0)
    gw = build_gateway(settings)
    assert isinstance(gw.inner, SimulatedGateway)
    assert (gw.breaker.timeout, gw.breaker.volume) == (4.0, 7)
    assert (gw.breaker.error_threshold, gw.breaker.reset_seconds) == (0.3, 60.0)
    assert await authorize(gw) is PaymentStatus.authorized
    await gw.aclose()


async def test_factory_over_http_when_a_url_is_set() -> None:
    settings = Settings(
        _env_file=None,
        payment_gateway_url="http://127.0.0.1:1",
        payment_breaker_error_threshold=0.5,
        payment_breaker_reset_seconds=5.0,
    )
    gw = build_gateway(settings)
    assert isinstance(gw.inner, HttpGateway)
    assert (gw.breaker.error_threshold, gw.breaker.reset_seconds) == (0.5, 5.0)
    await gw.aclose()


async def test_closing_the_gateway_drops_the_breakers_half_open_timer() -> None:
    gw = resilient(SimulatedGateway(), attempts=1, volume=1, reset_seconds=0.1)
    with pytest.raises(PaymentUnavailable):
        await authorize(gw, CARD_PROCESSING_ERROR)
    assert state(gw) is BreakerState.open
    await gw.aclose()
    with capture_logs() as logs:
        await asyncio.sleep(0.3)
    # The timer that would half-open it went with the server that owned it.
    assert logs == []
