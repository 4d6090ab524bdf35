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
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.models import IdempotencyKey, Order, Payment
from emporium.order.tasks import PaymentReconciler
from emporium.payment.http import HttpGateway
from emporium.payment.resilience import ResilientGateway
from tests.checkout.helpers import body, fill_cart, stock_of
from tests.fixtures import auth

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


async def test_kill_9_during_payment_leaves_a_paid_order_with_one_charge(
    settings: Settings, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony = catalog["product"]["sony"]
    await fill_cart(maker, catalog["user"]["customer"], {sony: 2})
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
    gw = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emporium",
            "payment-gateway",
            "--port",
            str(gw_port),
            "--hang-seconds",
            "3",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "emporium", "serve", "--port", str(api_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(_wait_http, f"{gateway_url}/health")
        await asyncio.to_thread(_wait_http, f"http://127.0.0.1:{api_port}/api/health")

        def pay() -> None:
            with contextlib.suppress(httpx.TransportError):  # the server dies mid-request
                httpx.post(
                    f"http://127.0.0.1:{api_port}/api/v1/checkout",
                    json=body(SLOW_CARD),
                    headers={**auth("customer"), "Idempotency-Key": "crash-1"},
                    timeout=30,
                )

        buyer = threading.Thread(target=pay)
        buyer.start()
        for _ in range(100):  # until the order exists and the gateway call is in flight
            async with maker() as s:
                status = await s.scalar(select(Order.status))
            if status == "pending_payment":
                break
            await asyncio.sleep(0.05)
        assert status == "pending_payment"
        await asyncio.sleep(0.3)
        os.kill(api.pid, signal.SIGKILL)
        api.wait(timeout=10)
        buyer.join(timeout=30)
        await asyncio.sleep(3.5)  # the gateway finishes the slow charge on its own

        gateway = ResilientGateway(HttpGateway(gateway_url, timeout=5))
        try:
            outcome = await PaymentReconciler(maker, gateway, stale_after=timedelta(0)).run_once()
        finally:
            await gateway.aclose()
        stats = httpx.get(f"{gateway_url}/_simulator/stats", timeout=5).json()
    finally:
        for proc in (api, gw):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
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
