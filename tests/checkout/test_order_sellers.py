"""A seller ships, delivers and refunds only what is its own; an order with nothing of
its own is, to it, one that does not exist."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import AuditLog, OrderEvent, Shipment
from tests.checkout.helpers import count, gateway_payments, stock_of
from tests.checkout.test_orders import _paid_order
from tests.fixtures import auth

API = "/api/v1"
SHARED_TOTAL = Decimal("1139.96")  # three Sony at 349.99 and one Ninja at 89.99


async def _state(
    app: FastAPI, maker: async_sessionmaker[AsyncSession], order_id: int, products: list[int]
) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    async with maker() as s:
        status = await s.scalar(text("SELECT status FROM orders WHERE id = :i"), {"i": order_id})
    return (
        status,
        [await stock_of(maker, p) for p in products],
        await count(maker, AuditLog),
        await count(maker, OrderEvent),
        await count(maker, Shipment),
        await gateway_payments(app),
    )


async def _ship(client: AsyncClient, who: str, order_id: int, warehouse_id: int) -> Any:
    return await client.post(
        f"{API}/orders/{order_id}/ship",
        json={"warehouse_id": warehouse_id, "tracking_number": f"TRK-{who}-{warehouse_id}"},
        headers=auth(who),
    )


async def test_a_seller_of_part_of_an_order_ships_only_its_own_warehouse(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    p, w1, w2 = catalog["product"], catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    # Acme's Sony all from W1, Globex's Ninja from W2 (the only one that has it).
    order = await _paid_order(client, maker, catalog, {p["sony"]: 3, p["coffee"]: 1}, "ps-1")
    oid = order["id"]
    products = [p["sony"], p["coffee"]]
    before = await _state(app, maker, oid, products)
    assert before[0:2] == ("paid", [[(7, 0), (5, 0)], [(0, 0), (3, 0)]])
    assert before[4:] == (0, [("captured", SHARED_TOTAL, Decimal("0"))])

    for who, warehouse in (("acme", w2), ("globex", w1)):
        r = await _ship(client, who, oid, warehouse)
        assert r.status_code == 403, r.text
        assert r.json() == {
            "error": "not_order_seller",
            "detail": f"warehouse {warehouse}'s shipment of order {oid} holds other sellers'"
            " products; only an admin may ship it",
        }
        assert await _state(app, maker, oid, products) == before

    r = await _ship(client, "acme", oid, w1)
    assert (r.status_code, r.json()["status"]) == (200, "partially_shipped")
    # Acme is shown its own part: its items and their total, no payment of the buyer's.
    seen = r.json()
    assert [(i["product_id"], i["quantity"]) for i in seen["items"]] == [(p["sony"], 3)]
    assert (seen["subtotal"], seen["total"], seen["payment"]) == ("1049.97", "1049.97", None)
    assert [s["warehouse_id"] for s in seen["shipments"]] == [w1]
    # Once shipped, another seller's warehouse is still not one to ship.
    r = await _ship(client, "globex", oid, w1)
    assert (r.status_code, r.json()["error"]) == (403, "not_order_seller")
    r = await _ship(client, "globex", oid, w2)
    assert (r.status_code, r.json()["status"]) == (200, "shipped")
    assert [(s["warehouse_id"], s["tracking_number"]) for s in r.json()["shipments"]] == [
        (w2, f"TRK-globex-{w2}"),
    ]
    assert [i["product_id"] for i in r.json()["items"]] == [p["coffee"]]
    assert (r.json()["total"], r.json()["payment"]) == ("89.99", None)
    r = await client.get(f"{API}/orders/{oid}", headers=auth("customer"))
    assert [(s["warehouse_id"], s["tracking_number"]) for s in r.json()["shipments"]] == [
        (w1, f"TRK-acme-{w1}"),
        (w2, f"TRK-globex-{w2}"),
    ]
    assert (r.json()["total"], r.json()["payment"]["status"]) == ("1139.96", "captured")

    # Delivering and refunding act on the whole order: neither seller alone may.
    shipped = await _state(app, maker, oid, products)
    for who in ("acme", "globex"):
        r = await client.post(f"{API}/orders/{oid}/deliver", headers=auth(who))
        assert r.status_code == 403, r.text
        assert r.json() == {
            "error": "not_order_seller",
            "detail": f"order {oid} holds other sellers' products; only an admin may deliver it",
        }
        assert await _state(app, maker, oid, products) == shipped
    r = await client.post(f"{API}/orders/{oid}/deliver", headers=auth("admin"))
    assert (r.status_code, r.json()["status"]) == (200, "delivered")

    delivered = await _state(app, maker, oid, products)
    assert delivered[0:2] == ("delivered", [[(7, 0), (5, 0)], [(0, 0), (3, 0)]])
    for who in ("acme", "globex"):
        r = await client.post(
            f"{API}/orders/{oid}/refund", json={"restock": True}, headers=auth(who)
        )
        assert r.status_code == 403, r.text
        assert r.json() == {
            "error": "not_order_seller",
            "detail": f"order {oid} holds other sellers' products; only an admin may refund it",
        }
        assert await _state(app, maker, oid, products) == delivered
    assert await gateway_payments(app) == [("captured", SHARED_TOTAL, Decimal("0"))]

    r = await client.post(
        f"{API}/orders/{oid}/refund", json={"restock": True}, headers=auth("admin")
    )
    assert (r.status_code, r.json()["status"]) == (200, "refunded")
    assert [await stock_of(maker, x) for x in products] == [[(10, 0), (5, 0)], [(0, 0), (4, 0)]]
    assert await gateway_payments(app) == [("refunded", SHARED_TOTAL, SHARED_TOTAL)]


async def test_a_warehouse_holding_two_sellers_units_is_shipped_by_an_admin(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    p, w1 = catalog["product"], catalog["warehouse"]["W1"]
    # Acme's cable and Globex's Anker, both from W1.
    order = await _paid_order(client, maker, catalog, {p["cable"]: 1, p["anker_q20"]: 1}, "ps-2")
    oid = order["id"]
    products = [p["cable"], p["anker_q20"]]
    before = await _state(app, maker, oid, products)
    assert before[0:2] == ("paid", [[(49, 0), (50, 0)], [(99, 0), (0, 0)]])
    for who in ("acme", "globex"):
        r = await _ship(client, who, oid, w1)
        assert (r.status_code, r.json()["error"]) == (403, "not_order_seller")
        assert await _state(app, maker, oid, products) == before
    r = await _ship(client, "admin", oid, w1)
    assert (r.status_code, r.json()["status"]) == (200, "shipped")
    assert await count(maker, Shipment) == 1


async def test_the_sole_seller_of_an_order_ships_delivers_and_refunds_it(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    p, w1, w2 = catalog["product"], catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    # Two of Acme's products: Sony 10 from W1 and 2 from W2, the cables from W1.
    order = await _paid_order(client, maker, catalog, {p["sony"]: 12, p["cable"]: 2}, "ps-3")
    oid = order["id"]
    total = Decimal("4225.86")  # 12 x 349.99 + 2 x 12.99
    assert Decimal(order["total"]) == total
    r = await _ship(client, "acme", oid, w1)
    assert (r.status_code, r.json()["status"]) == (200, "partially_shipped")
    # The sole seller is shown every item, but not the buyer's payment.
    assert [(i["product_id"], i["quantity"]) for i in r.json()["items"]] == [
        (p["sony"], 12),
        (p["cable"], 2),
    ]
    assert (r.json()["total"], r.json()["payment"]) == ("4225.86", None)
    r = await _ship(client, "acme", oid, w2)
    assert (r.status_code, r.json()["status"]) == (200, "shipped")
    r = await client.post(f"{API}/orders/{oid}/deliver", headers=auth("acme"))
    assert (r.status_code, r.json()["status"]) == (200, "delivered")
    assert await stock_of(maker, p["sony"]) == [(0, 0), (3, 0)]
    assert await stock_of(maker, p["cable"]) == [(48, 0), (50, 0)]
    r = await client.post(
        f"{API}/orders/{oid}/refund", json={"restock": True}, headers=auth("acme")
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["payment"]) == ("refunded", None)
    r = await client.get(f"{API}/orders/{oid}", headers=auth("customer"))
    assert r.json()["payment"]["status"] == "refunded"
    assert await stock_of(maker, p["sony"]) == [(10, 0), (5, 0)]
    assert await stock_of(maker, p["cable"]) == [(50, 0), (50, 0)]
    assert await gateway_payments(app) == [("refunded", total, total)]


async def test_a_seller_with_no_item_in_an_order_is_told_it_does_not_exist(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    p, w1, w2 = catalog["product"], catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    order = await _paid_order(client, maker, catalog, {p["sony"]: 3}, "ps-4")  # all from W1
    oid, missing = order["id"], 10**12

    async def refused(method: str, path: str, json: Any = None) -> None:
        """Globex is answered as for a missing order, and nothing changes."""
        before = await _state(app, maker, oid, [p["sony"]])
        for order_id in (oid, missing):
            r = await client.request(
                method, f"{API}{path.format(order_id)}", json=json, headers=auth("globex")
            )
            assert r.status_code == 404, r.text
            assert r.json() == {
                "error": "order_not_found",
                "detail": f"order {order_id} does not exist",
            }
        assert await _state(app, maker, oid, [p["sony"]]) == before

    # Whichever warehouse is named, even one with nothing of the order's.
    for warehouse in (w1, w2):
        body = {"warehouse_id": warehouse, "tracking_number": "TRK-G"}
        await refused("POST", "/orders/{}/ship", body)
    await refused("POST", "/orders/{}/deliver")
    await refused("POST", "/orders/{}/refund", {"restock": True})
    await refused("GET", "/fulfillment/orders/{}")

    r = await _ship(client, "admin", oid, w1)
    assert (r.status_code, r.json()["status"]) == (200, "shipped")
    await refused("POST", "/orders/{}/deliver")
    r = await client.post(f"{API}/orders/{oid}/deliver", headers=auth("admin"))
    assert (r.status_code, r.json()["status"]) == (200, "delivered")
    await refused("POST", "/orders/{}/refund", {"restock": True})
    await refused("POST", "/orders/{}/refund")
    after = await _state(app, maker, oid, [p["sony"]])
    assert after[0:2] == ("delivered", [[(7, 0), (5, 0)]])
    # The timeline (pending_payment, paid, shipped, delivered), the one shipment, the charge.
    assert after[3:] == (4, 1, [("captured", Decimal("1049.97"), Decimal("0"))])
