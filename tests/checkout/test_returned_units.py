"""A failed payment gives its units back to the cart, each line up to the 1000-unit limit,
also when the buyer filled the line again while the card was being charged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import AuditLog, OutboxEvent
from tests.cart import (
    ITEMS,
    assert_reserved_matches,
    execute,
    line_rows,
    reservation_rows,
    stock_rows,
)
from tests.checkout.helpers import (
    DECLINED,
    VISA,
    HeldGateway,
    body,
    charges,
    fill_cart,
    use_gateway,
)
from tests.fixtures import auth

API = "/api/v1"


def _released() -> float:
    return REGISTRY.get_sample_value("inventory_reservations_total", {"status": "released"}) or 0.0


@pytest.mark.parametrize(
    ("card", "unreachable", "added", "status", "kept"),
    [
        # Declined; the other tab filled the line: all the returned units are released.
        (DECLINED, False, 1000, 402, []),
        # Not attempted; room for 700 of the returned 1000.
        (VISA, True, 300, 503, [700]),
    ],
)
async def test_units_of_a_failed_payment_fill_the_line_up_to_the_limit(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    card: dict[str, str],
    unreachable: bool,
    added: int,
    status: int,
    kept: list[int],
) -> None:
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    w1, w2 = catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    await execute(maker, "UPDATE stock SET quantity = 2500 WHERE product_id = :p", p=cable)
    cart_id = await fill_cart(maker, customer, {cable: 1000})  # all from W1
    held = HeldGateway(app.state.checkout.gateway, unreachable=unreachable)
    use_gateway(app, held)
    headers = {**auth("customer"), "Idempotency-Key": "full-1"}
    checkout = asyncio.create_task(client.post(f"{API}/checkout", json=body(card), headers=headers))
    await held.charging.wait()
    # Another tab, while the card is charged: the cart is empty, so the line can be filled.
    r = await client.post(
        ITEMS, json={"product_id": cable, "quantity": added}, headers=auth("customer")
    )
    assert r.status_code == 200, r.text
    assert await stock_rows(maker, cable) == [(w1, 2500, 1000), (w2, 2500, added)]
    released = _released()
    held.release.set()
    r = await checkout

    assert r.status_code == status, r.text
    if status == 402:
        assert (r.json()["error"], r.json()["decline_code"]) == (
            "payment_declined",
            "card_declined",
        )
        assert r.json()["order"]["status"] == "payment_failed"
    else:
        assert r.json() == {
            "error": "payment_unavailable",
            "detail": "the payment service could not be reached; nothing was charged and the"
            " units went back to the cart, up to 1000 a line",
        }
    assert await line_rows(maker) == [(cart_id, cable, 1000)]
    # The other tab's holds stay; the returned ones past the limit are released.
    assert await reservation_rows(maker) == [
        (cart_id, cable, w2, added),
        *((cart_id, cable, w1, q) for q in kept),
    ]
    assert await stock_rows(maker, cable) == [(w1, 2500, sum(kept)), (w2, 2500, added)]
    await assert_reserved_matches(maker)
    assert _released() == released + 1
    async with maker() as s:
        audits = (
            await s.execute(
                select(
                    AuditLog.action, AuditLog.entity_id, AuditLog.old_values, AuditLog.new_values
                )
                .where(AuditLog.action.in_(("inventory.released", "payment.failed")))
                .order_by(AuditLog.id)
            )
        ).all()
        last = await s.scalar(
            select(OutboxEvent.payload)
            .where(OutboxEvent.topic == "stock.changed")
            .order_by(OutboxEvent.id.desc())
            .limit(1)
        )
    code = "payment_unavailable" if unreachable else "card_declined"
    assert [tuple(a) for a in audits] == [
        (
            "inventory.released",
            str(cable),
            {"reserved": {str(w1): 1000}},
            {"reserved": {str(w1): sum(kept)}},
        ),
        ("payment.failed", "1", None, {"code": code}),
    ]
    assert last == {"reserved": {str(w1): sum(kept)}}
    assert charges(app) == 0
