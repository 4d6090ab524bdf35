"""The gateway contract, in-process and over HTTP against `emporium payment-gateway` run as a
real subprocess; plus the network faults only a real server can produce."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal

import httpx
import pytest

from emporium.payment.gateway import (
    Card,
    GatewayServerError,
    GatewayUnreachable,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentGateway,
    PaymentNotAttempted,
    PaymentNotFound,
    PaymentStateError,
    PaymentStatus,
    PaymentTransientError,
    PaymentUnavailable,
)
from emporium.payment.http import HttpGateway
from emporium.payment.resilience import BreakerState, CircuitBreaker, CircuitOpen, ResilientGateway
from emporium.payment.simulated import (
    CARD_DECLINED,
    CARD_HANG,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_PROCESSING_ERROR,
    SimulatedGateway,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emporium", "payment-gateway", "--port", str(port)],
        env={**os.environ, "COLUMNS": "200"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gateway process exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).json() == {"status": "ok"}:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    proc, url = start_server()
    yield url
    stop_server(proc)


@dataclass
class Target:
    gateway: PaymentGateway
    charges: Callable[[], Awaitable[int]]
    calls: Callable[[], Awaitable[int]]


@pytest.fixture(params=["in_process", "http"])
async def target(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[Target]:
    if request.param == "in_process":
        sim = SimulatedGateway()

        async def sim_charges() -> int:
            return sim.charges

        async def sim_calls() -> int:
            return sim.calls["authorize"]

        yield Target(sim, sim_charges, sim_calls)
        return
    http = HttpGateway(server_url, timeout=5.0)

    async def stats(field: str) -> int:
        async with httpx.AsyncClient(base_url=server_url) as c:
            body = (await c.get("/_simulator/stats")).json()
        return int(body["charges"] if field == "charges" else body["calls"].get("authorize", 0))

    yield Target(http, lambda: stats("charges"), lambda: stats("calls"))
    await http.aclose()


def card(number: str = CARD_OK, exp: str = "12/99", cvc: str = "123") -> Card:
    return Card(number=number, exp=exp, cvc=cvc)


def key() -> str:
    return f"order-{uuid.uuid4()}"


async def test_success_card(target: Target) -> None:
    gw, k = target.gateway, key()
    before = await target.charges()
    p = await gw.authorize(idempotency_key=k, amount=Decimal("12.30"), currency="USD", card=card())
    assert p.status is PaymentStatus.authorized
    assert (p.amount, p.currency, p.card_last4, p.decline_code) == (
        Decimal("12.30"),
        "USD",
        "4242",
        None,
    )
    assert str(p.amount) == "12.30"
    assert p.idempotency_key == k
    assert await target.charges() == before + 1
    assert await gw.get_by_idempotency_key(k) == p
    assert await gw.get_by_idempotency_key(key()) is None


@pytest.mark.parametrize(
    ("c", "code", "last4"),
    [
        (card(CARD_DECLINED), "card_declined", "0002"),
        (card(CARD_INSUFFICIENT_FUNDS), "insufficient_funds", "9995"),
        (card("4242424242424241"), "incorrect_number", "4241"),
        (card(exp="01/20"), "expired_card", "4242"),
        (card(exp="13/30"), "invalid_expiry", "4242"),
        (card(cvc="12a"), "incorrect_cvc", "4242"),
    ],
)
async def test_declines(target: Target, c: Card, code: str, last4: str) -> None:
    gw, k = target.gateway, key()
    before = await target.charges()
    with pytest.raises(PaymentDeclined) as exc_info:
        await gw.authorize(idempotency_key=k, amount=Decimal("5.00"), currency="EUR", card=c)
    assert exc_info.value.code == code
    declined = exc_info.value.payment
    assert declined is not None
    assert (declined.status, declined.decline_code, declined.card_last4) == (
        PaymentStatus.declined,
        code,
        last4,
    )
    assert (declined.amount, declined.currency) == (Decimal("5.00"), "EUR")
    assert await gw.get_by_idempotency_key(k) == declined
    assert await target.charges() == before


async def test_processing_error_card_is_transient(target: Target) -> None:
    k = key()
    # A 5xx of the gateway's own: the request is over there, and nothing was recorded.
    with pytest.raises(GatewayServerError):
        await target.gateway.authorize(
            idempotency_key=k, amount=Decimal("1"), currency="USD", card=card(CARD_PROCESSING_ERROR)
        )
    assert await target.gateway.get_by_idempotency_key(k) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, GatewayServerError),
        (503, GatewayServerError),
        (502, PaymentTransientError),
        (504, PaymentTransientError),
    ],
)
async def test_a_proxys_5xx_is_not_taken_for_the_gateways_answer(
    status: int, kind: type[Exception]
) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, text="no"))
    http = HttpGateway("http://gateway.test", transport=transport)
    with pytest.raises(PaymentTransientError) as exc_info:
        await http.charge(idempotency_key=key(), amount=Decimal("1"), currency="USD", card=card())
    assert type(exc_info.value) is kind
    await http.aclose()


async def test_twenty_concurrent_authorizations_charge_once(target: Target) -> None:
    gw, k = target.gateway, key()
    charges, calls = await target.charges(), await target.calls()
    payments = await asyncio.gather(
        *(
            gw.authorize(idempotency_key=k, amount=Decimal("42.00"), currency="USD", card=card())
            for _ in range(20)
        )
    )
    assert len({p.id for p in payments}) == 1
    assert await target.charges() == charges + 1
    assert await target.calls() == calls + 20
    assert await gw.get_by_idempotency_key(k) == payments[0]
    with pytest.raises(IdempotencyConflict):
        await gw.authorize(idempotency_key=k, amount=Decimal("43.00"), currency="USD", card=card())


async def test_state_transitions(target: Target) -> None:
    gw = target.gateway
    p = await gw.authorize(
        idempotency_key=key(), amount=Decimal("20.00"), currency="USD", card=card()
    )
    assert (await gw.capture(p.id)).status is PaymentStatus.captured
    with pytest.raises(PaymentStateError):
        await gw.void(p.id)
    part = await gw.refund(p.id, Decimal("5.50"))
    assert (part.status, part.refunded_amount) == (PaymentStatus.captured, Decimal("5.50"))
    with pytest.raises(PaymentStateError):
        await gw.refund(p.id, Decimal("14.51"))
    full = await gw.refund(p.id)
    assert (full.status, full.refunded_amount) == (PaymentStatus.refunded, Decimal("20.00"))

    v = await gw.authorize(idempotency_key=key(), amount=Decimal("7"), currency="USD", card=card())
    assert (await gw.void(v.id)).status is PaymentStatus.voided
    with pytest.raises(PaymentStateError) as exc_info:
        await gw.refund(v.id)
    assert exc_info.value.payment is not None
    assert exc_info.value.payment.status is PaymentStatus.voided
    with pytest.raises(PaymentStateError):
        await gw.capture(v.id)
    with pytest.raises(PaymentNotFound):
        await gw.capture("pay_does_not_exist")
    with pytest.raises(PaymentNotFound):
        await gw.refund("pay/../weird id")


async def test_a_charge_captures_at_once_and_replays(target: Target) -> None:
    gw, k = target.gateway, key()
    before = await target.charges()
    twenty = await asyncio.gather(
        *(
            gw.charge(idempotency_key=k, amount=Decimal("30.00"), currency="USD", card=card())
            for _ in range(20)
        )
    )
    assert len({p.id for p in twenty}) == 1
    p = twenty[0]
    assert (p.status, p.amount, p.refunded_amount) == (
        PaymentStatus.captured,
        Decimal("30.00"),
        Decimal("0"),
    )
    assert await target.charges() == before + 1
    assert await gw.get_by_idempotency_key(k) == p
    with pytest.raises(IdempotencyConflict):
        await gw.charge(idempotency_key=k, amount=Decimal("31.00"), currency="USD", card=card())
    refunded = await gw.refund(p.id)
    assert (refunded.status, refunded.refunded_amount) == (PaymentStatus.refunded, p.amount)

    # A key an authorization holds: that payment is captured, not a second one made.
    held = await gw.authorize(
        idempotency_key=(k2 := key()), amount=Decimal("4"), currency="USD", card=card()
    )
    taken = await gw.charge(idempotency_key=k2, amount=Decimal("4"), currency="USD", card=card())
    assert (taken.id, taken.status) == (held.id, PaymentStatus.captured)
    assert await target.charges() == before + 2

    voided = await gw.authorize(
        idempotency_key=(k3 := key()), amount=Decimal("5"), currency="USD", card=card()
    )
    await gw.void(voided.id)
    with pytest.raises(PaymentStateError):
        await gw.charge(idempotency_key=k3, amount=Decimal("5"), currency="USD", card=card())
    after = await gw.get_by_idempotency_key(k3)
    assert after == replace(voided, status=PaymentStatus.voided)

    with pytest.raises(PaymentDeclined) as declined:
        await gw.charge(
            idempotency_key=key(), amount=Decimal("6"), currency="USD", card=card(CARD_DECLINED)
        )
    assert declined.value.payment is not None
    assert declined.value.payment.status is PaymentStatus.declined
    assert await target.charges() == before + 3


async def test_hang_card_times_out_over_http(server_url: str) -> None:
    http = HttpGateway(server_url, timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(PaymentTransientError):
        await http.authorize(
            idempotency_key=key(), amount=Decimal("1"), currency="USD", card=card(CARD_HANG)
        )
    assert time.perf_counter() - start < 1.5
    await http.aclose()


async def test_resilient_retries_over_http(server_url: str) -> None:
    http = HttpGateway(server_url, timeout=5.0)
    gw = ResilientGateway(
        http, CircuitBreaker(volume=100), attempts=3, backoff_base=0.001, backoff_max=0.01
    )
    async with httpx.AsyncClient(base_url=server_url) as c:
        before = (await c.get("/_simulator/stats")).json()["calls"].get("authorize", 0)
        with pytest.raises(PaymentUnavailable):
            await gw.authorize(
                idempotency_key=key(),
                amount=Decimal("1"),
                currency="USD",
                card=card(CARD_PROCESSING_ERROR),
            )
        after = (await c.get("/_simulator/stats")).json()["calls"]["authorize"]
    assert after - before == 3
    await gw.aclose()


async def test_wire_format(server_url: str) -> None:
    k = key()
    body = {
        "amount": "10.10",
        "currency": "USD",
        "card": {"number": CARD_OK, "exp": "12/2099", "cvc": "123"},
    }
    async with httpx.AsyncClient(base_url=server_url) as c:
        r = await c.post("/payments", json={**body, "idempotency_key": k})
        assert r.status_code == 200
        assert r.json()["amount"] == "10.10"
        assert r.json()["status"] == "authorized"
        again = await c.post("/payments", json=body, headers={"Idempotency-Key": k})
        assert again.json()["id"] == r.json()["id"]
        clash = await c.post(
            "/payments", json={**body, "idempotency_key": k}, headers={"Idempotency-Key": "other"}
        )
        assert (clash.status_code, clash.json()["error"]) == (400, "invalid_request")
        missing = await c.post("/payments", json=body)
        assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
        declined = await c.post(
            "/payments",
            json={**body, "card": {"number": CARD_DECLINED, "exp": "12/2099", "cvc": "123"}},
            headers={"Idempotency-Key": key()},
        )
        assert (declined.status_code, declined.json()["error"]) == (402, "card_declined")
        assert (await c.post("/payments", json={"amount": "x"})).status_code == 422


async def test_malformed_request_is_a_plain_payment_error(server_url: str) -> None:
    http = HttpGateway(server_url, timeout=5.0)
    with pytest.raises(PaymentError) as exc_info:
        await http.authorize(
            idempotency_key=key(), amount=Decimal("-3"), currency="USD", card=card()
        )
    assert type(exc_info.value) is PaymentError
    await http.aclose()


async def test_no_server_is_transient() -> None:
    http = HttpGateway(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(PaymentTransientError):
        await http.get_by_idempotency_key("k")
    await http.aclose()


async def test_killing_the_server_mid_request_is_unavailable_not_a_crash() -> None:
    proc, url = start_server()
    try:
        gw = ResilientGateway(
            HttpGateway(url, timeout=10.0),
            CircuitBreaker(volume=3, error_threshold=0.3, reset_seconds=60, timeout=10.0),
            attempts=3,
            backoff_base=0.001,
            backoff_max=0.01,
        )
        ok = await gw.authorize(
            idempotency_key=key(), amount=Decimal("1"), currency="USD", card=card()
        )
        assert ok.status is PaymentStatus.authorized
        # The hang card keeps a request in flight while the process dies under it.
        pending = asyncio.create_task(
            gw.authorize(
                idempotency_key=key(), amount=Decimal("1"), currency="USD", card=card(CARD_HANG)
            )
        )
        async with httpx.AsyncClient(base_url=url) as c:
            for _ in range(100):
                if (await c.get("/_simulator/stats")).json()["calls"]["authorize"] == 2:
                    break
                await asyncio.sleep(0.02)
        proc.kill()
        proc.wait(timeout=10)
        start = time.perf_counter()
        with pytest.raises(PaymentUnavailable) as exc_info:
            await pending
        assert time.perf_counter() - start < 2.0
        # In flight: server disconnected (1 failure); retry: connection refused (2 of 3
        # calls failed, the breaker opens); the third attempt is refused by the breaker.
        # The first may have got there, so it is not "not attempted".
        assert type(exc_info.value) is PaymentUnavailable
        assert isinstance(exc_info.value.__cause__, CircuitOpen)
        assert gw.breaker.state is BreakerState.open
        with pytest.raises(CircuitOpen):
            await gw.get_by_idempotency_key(ok.idempotency_key)
        await gw.aclose()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_dead_server_without_a_breaker_trip_is_unavailable() -> None:
    proc, url = start_server()
    proc.kill()
    proc.wait(timeout=10)
    gw = ResilientGateway(
        HttpGateway(url, timeout=2.0),
        CircuitBreaker(volume=100),
        attempts=3,
        backoff_base=0.001,
        backoff_max=0.01,
    )
    with pytest.raises(PaymentUnavailable) as exc_info:
        await gw.capture("pay_x")
    # Every connection was refused: certainly nothing reached the gateway.
    assert type(exc_info.value) is PaymentNotAttempted
    assert isinstance(exc_info.value.__cause__, GatewayUnreachable)
    await gw.aclose()
