"""A customer's order list: newest first, by status, in a fixed number of queries."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.kit.metrics import DB_STATEMENTS
from tests.checkout.helpers import DECLINED, body, fill_cart, key
from tests.fixtures import auth

API = "/api/v1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The caller's user row, once read, is kept for the whole test however slow the
    # machine: the statement count below is the page's alone.
    return settings.model_copy(update={"user_cache_seconds": 300.0})


async def three_orders(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any]
) -> list[int]:
    """A cancelled order, a payment_failed one and a paid one, oldest first."""
    customer = catalog["user"]["customer"]
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    await fill_cart(maker, customer, {sony: 1})
    first = (await client.post(f"{API}/checkout", json=body(), headers=key("l-1"))).json()
    r = await client.post(f"{API}/orders/{first['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 200
    await fill_cart(maker, customer, {cable: 2})
    r = await client.post(f"{API}/checkout", json=body(DECLINED), headers=key("l-2"))
    assert r.status_code == 402
    failed = r.json()["order"]
    r = await client.post(f"{API}/checkout", json=body(), headers=key("l-3"))
    assert r.status_code == 201
    return [first["id"], failed["id"], r.json()["id"]]


async def orders(client: AsyncClient, query: str = "") -> Any:
    r = await client.get(f"{API}/orders{query}", headers=auth("customer"))
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_list_shows_each_order_as_its_own_page_does(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any]
) -> None:
    cancelled, failed, paid = await three_orders(client, maker, catalog)
    page = await orders(client)
    assert [(o["id"], o["status"]) for o in page["items"]] == [
        (paid, "paid"),
        (failed, "payment_failed"),
        (cancelled, "cancelled"),
    ]
    assert page["next_cursor"] is None
    for listed in page["items"]:
        alone = await client.get(f"{API}/orders/{listed['id']}", headers=auth("customer"))
        assert listed == alone.json()
    by_id = {o["id"]: o for o in page["items"]}
    assert [t["status"] for t in by_id[cancelled]["timeline"]] == [
        "pending_payment",
        "paid",
        "cancelled",
    ]
    assert by_id[failed]["payment"]["error_code"] == "card_declined"
    assert [(i["product_id"], i["quantity"]) for i in by_id[paid]["items"]] == [
        (catalog["product"]["cable"], 2)
    ]


async def test_the_list_filters_by_status_and_pages(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any]
) -> None:
    cancelled, failed, paid = await three_orders(client, maker, catalog)
    assert [o["id"] for o in (await orders(client, "?status=paid"))["items"]] == [paid]
    both = await orders(client, "?status=cancelled&status=payment_failed")
    assert [o["id"] for o in both["items"]] == [failed, cancelled]
    assert (await orders(client, "?status=shipped"))["items"] == []

    first = await orders(client, "?limit=2")
    assert [o["id"] for o in first["items"]] == [paid, failed]
    rest = await orders(client, f"?limit=2&cursor={first['next_cursor']}")
    assert ([o["id"] for o in rest["items"]], rest["next_cursor"]) == ([cancelled], None)

    r = await client.get(f"{API}/orders?status=lost", headers=auth("customer"))
    assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
    assert r.json()["detail"][0]["field"] == "query.status.0"


async def test_a_page_costs_the_same_queries_for_one_order_or_many(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any]
) -> None:
    await three_orders(client, maker, catalog)
    await orders(client)  # the caller's user row is read once, then kept

    async def spent(query: str) -> int:
        before = DB_STATEMENTS._value.get()
        await orders(client, query)
        return int(DB_STATEMENTS._value.get() - before)

    # The page, then items, timelines, shipments and payments for all its orders.
    assert await spent("?limit=1") == 5
    assert await spent("?limit=3") == 5
