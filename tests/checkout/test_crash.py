"""Kill -9 of the server in the middle of a payment, then recovery by the reconciler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.models import IdempotencyKey, Order, Payment, User
from emporium.order.tasks import PaymentReconciler
from emporium.payment.http import HttpGateway
from emporium.payment.resilience import ResilientGateway
from tests.checkout.helpers import VISA, add_buyers, body, fill_cart, stock_of

SLOW_CARD = {"card_number": "4000000000000259", "exp": "12/30", "cvc": "123"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Servers:
    gateway_url: str
    api_url: str
    api: subprocess.Popen[bytes]


@contextlib.contextmanager
def _servers(settings: Settings) -> Iterator[Servers]:
    """The payment gateway as its own service (a slow card hangs 3 s there) and one API
    server process, on the test database and Valkey."""
    gw_port, api_port = _port(), _port()
    gateway_url = f"http://127.0.0.1:{gw_port}"
    env = {
        **os.environ,
        "EMPORIUM_DATABASE_URL": str(settings.database_url),
        "EMPORIUM_VALKEY_URL": str(settings.valkey_url),
        "EMPORIUM_DATA_DIR": str(settings.data_dir),
        "EMPORIUM_PAYMENT_GATEWAY_URL": gateway_url,
        "EMPORIUM_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "emporium"]
    gw = subprocess.Popen(
        [*command, "payment-gateway", "--port", str(gw_port), "--hang-seconds", "3"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = subprocess.Popen(
        [*command, "serve", "--port", str(api_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"{gateway_url}/health")
        _wait_http(f"http://127.0.0.1:{api_port}/api/health")
        yield Servers(gateway_url, f"http://127.0.0.1:{api_port}", api)
    finally:
        for proc in (api, gw):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def _checkout(api_url: str, token: str, card: dict[str, str], key: str) -> int | None:
    """The answer's status, or None when the server died mid-request."""
    try:
        r = httpx.post(
            f"{api_url}/api/v1/checkout",
            json=body(card),
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            timeout=30,
        )
    except httpx.TransportError:
        return None
    return r.status_code


async def _reconcile(gateway_url: str, maker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    gateway = ResilientGateway(HttpGateway(gateway_url, timeout=5))
    try:
        return await PaymentReconciler(maker, gateway, stale_after=timedelta(0)).run_once()
    finally:
        await gateway.aclose()


async def _wait_for(maker: async_sessionmaker[AsyncSession], statuses: dict[str, int]) -> None:
    """Until the orders are in these states (the rest waiting on the gateway), then a
    little more: the pending orders' gateway calls are in flight."""
    for _ in range(200):
        async with maker() as s:
            counts = dict(
                (await s.execute(select(Order.status, func.count()).group_by(Order.status))).all()
            )
        if counts == statuses:
            break
        await asyncio.sleep(0.05)
    assert counts == statuses
    await asyncio.sleep(0.3)


async def test_kill_9_during_payment_leaves_a_paid_order_with_one_charge(
    settings: Settings, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony = catalog["product"]["sony"]
    await fill_cart(maker, catalog["user"]["customer"], {sony: 2})
    with _servers(settings) as servers:
        buyer = threading.Thread(
            target=_checkout, args=(servers.api_url, "test-customer", SLOW_CARD, "crash-1")
        )
        buyer.start()
        await _wait_for(maker, {"pending_payment": 1})
        os.kill(servers.api.pid, signal.SIGKILL)
        servers.api.wait(timeout=10)
        buyer.join(timeout=30)
        await asyncio.sleep(3.5)  # the gateway finishes the slow charge on its own
        outcome = await _reconcile(servers.gateway_url, maker)
        stats = httpx.get(f"{servers.gateway_url}/_simulator/stats", timeout=5).json()
    assert outcome == {"paid": 1}
    async with maker() as s:
        orders = (await s.execute(select(Order.status))).scalars().all()
        payments = (await s.execute(select(Payment.status))).scalars().all()
    assert list(orders) == ["paid"]
    async with maker() as s:
        key = await s.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "crash-1"))
    # The checkout that died mid-payment is answered with the settled order on replay.
    assert key is not None
    assert (key.state, key.response_status) == ("completed", 201)
    assert key.response_body is not None
    assert key.response_body["status"] == "paid"
    assert list(payments) == ["captured"]
    assert stats["charges"] == 1
    assert await stock_of(maker, sony) == [(8, 0), (5, 0)]


async def test_kill_9_with_checkouts_in_flight_settles_each_once(
    settings: Settings, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    # Four buyers pay at once: two with a card the gateway answers at once, whose orders
    # the server marks paid, and two whose charges are still in flight when it dies.
    cable = catalog["product"]["cable"]
    tokens = await add_buyers(maker, 3)
    async with maker() as s:
        users = {
            u.email: u.id
            for u in (await s.execute(select(User).where(User.email.in_(tokens)))).scalars()
        }
    for email in tokens:
        await fill_cart(maker, users[email], {cable: 2})
    cards = dict(zip(tokens, (VISA, VISA, SLOW_CARD, SLOW_CARD), strict=True))
    with _servers(settings) as servers:
        answers: dict[str, int | None] = {}

        def pay(email: str) -> None:
            answers[email] = _checkout(servers.api_url, tokens[email], cards[email], email)

        buyers = [threading.Thread(target=pay, args=(email,)) for email in tokens]
        for buyer in buyers:
            buyer.start()
        for buyer in buyers[:2]:  # the answered ones: paid, and their answers out
            await asyncio.to_thread(buyer.join, 30)
        await _wait_for(maker, {"paid": 2, "pending_payment": 2})
        os.kill(servers.api.pid, signal.SIGKILL)
        servers.api.wait(timeout=10)
        for buyer in buyers:
            buyer.join(timeout=30)
        await asyncio.sleep(3.5)
        outcome = await _reconcile(servers.gateway_url, maker)
        again = await _reconcile(servers.gateway_url, maker)
        stats = httpx.get(f"{servers.gateway_url}/_simulator/stats", timeout=5).json()
    assert [answers[e] for e in tokens] == [201, 201, None, None]
    assert (outcome, again) == ({"paid": 2}, {})
    async with maker() as s:
        orders = (await s.execute(select(Order.status))).scalars().all()
        payments = (await s.execute(select(Payment.status))).scalars().all()
        keys = (await s.execute(select(IdempotencyKey.state, IdempotencyKey.response_status))).all()
    assert sorted(orders) == ["paid"] * 4
    assert sorted(payments) == ["captured"] * 4
    assert sorted(tuple(k) for k in keys) == [("completed", 201)] * 4
    assert stats["charges"] == 4
    assert await stock_of(maker, cable) == [(46, 0), (46, 0)]  # most stock first, in turn
