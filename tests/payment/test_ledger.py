"""The built-in gateway's payments in Valkey, shared by every server process.

Each SimulatedGateway below has its own in-process state, as two server processes do;
only Valkey is shared."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from fastapi import FastAPI

from emporium.payment.gateway import (
    Card,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentStateError,
    PaymentStatus,
)
from emporium.payment.ledger import PREFIX, RETENTION_SECONDS, ValkeyLedger
from emporium.payment.simulated import CARD_DECLINED, CARD_OK, SimulatedGateway

OK = Card(CARD_OK, "12/30", "123")


@pytest.fixture
def pair(app: FastAPI) -> tuple[SimulatedGateway, SimulatedGateway]:
    client = app.state.cache.client
    return SimulatedGateway(ledger=ValkeyLedger(client)), SimulatedGateway(
        ledger=ValkeyLedger(client)
    )


async def rows(app: FastAPI) -> list[tuple[str, str, Decimal, Decimal]]:
    """(key, status, amount, refunded) of every payment stored, by key."""
    ledger = ValkeyLedger(app.state.cache.client)
    found = []
    async for key in ledger.client.scan_iter(match=f"{PREFIX}pay:*"):
        p = await ledger.by_id(key.decode().rsplit(":", 1)[1])
        assert p is not None
        assert await ledger.client.ttl(key) > RETENTION_SECONDS - 60
        found.append((p.idempotency_key, p.status.value, p.amount, p.refunded_amount))
    return sorted(found)


async def test_one_key_charged_from_two_processes_at_once_is_one_charge(
    app: FastAPI, pair: tuple[SimulatedGateway, SimulatedGateway]
) -> None:
    a, b = pair
    calls = [
        gw.authorize(idempotency_key="order-1", amount=Decimal("25.00"), currency="USD", card=OK)
        for _ in range(20)
        for gw in (a, b)
    ]
    payments = await asyncio.gather(*calls)
    assert len({p.id for p in payments}) == 1
    assert a.charges + b.charges == 1
    assert await rows(app) == [("order-1", "authorized", Decimal("25.00"), Decimal("0"))]


async def test_a_declined_or_conflicting_key_answers_the_same_in_another_process(
    app: FastAPI, pair: tuple[SimulatedGateway, SimulatedGateway]
) -> None:
    a, b = pair
    declined = Card(CARD_DECLINED, "12/30", "123")
    with pytest.raises(PaymentDeclined) as first:
        await a.authorize(idempotency_key="k-d", amount=Decimal("5"), currency="USD", card=declined)
    with pytest.raises(PaymentDeclined) as again:
        await b.authorize(idempotency_key="k-d", amount=Decimal("5"), currency="USD", card=declined)
    assert first.value.payment is not None
    assert again.value.payment is not None
    assert again.value.payment.id == first.value.payment.id
    await a.authorize(idempotency_key="k-c", amount=Decimal("10"), currency="USD", card=OK)
    with pytest.raises(IdempotencyConflict):
        await b.authorize(idempotency_key="k-c", amount=Decimal("20"), currency="USD", card=OK)
    assert a.charges + b.charges == 1
    assert await rows(app) == [
        ("k-c", "authorized", Decimal("10"), Decimal("0")),
        ("k-d", "declined", Decimal("5"), Decimal("0")),
    ]


async def test_refunds_from_two_processes_never_exceed_the_charge(
    app: FastAPI, pair: tuple[SimulatedGateway, SimulatedGateway]
) -> None:
    a, b = pair
    p = await a.authorize(idempotency_key="k-r", amount=Decimal("100"), currency="USD", card=OK)
    await b.capture(p.id)
    parts = [gw.refund(p.id, Decimal("10")) for _ in range(6) for gw in (a, b)]
    results = await asyncio.gather(*parts, return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 2
    assert all(isinstance(r, PaymentStateError) for r in refused)
    final = await b.get_by_idempotency_key("k-r")
    assert final is not None
    assert (final.status, final.refunded_amount) == (PaymentStatus.refunded, Decimal("100"))
    # A retried full refund, from either process, is a no-op.
    assert (await a.refund(p.id)).refunded_amount == Decimal("100")
    assert await rows(app) == [("k-r", "refunded", Decimal("100"), Decimal("100"))]
