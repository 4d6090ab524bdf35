"""Admins and sellers see the orders they have to ship, by warehouse."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.checkout.helpers import ADDRESS, DECLINED, body, fill_cart
from tests.fixtures import auth

API = "/api/v1"
SONY = "Sony WH-1000XM5 Wireless Noise Cancelling Headphones"
ANKER = "Anker Soundcore Life Q20 Headphones"


async def _checkout(
    client: AsyncClient,
    maker: async_sessionmaker[AsyncSession],
    catalog: dict[str, Any],
    lines: dict[int, int],
    key: str,
    card: dict[str, str] | None = None,
) -> int:
    await fill_cart(maker, catalog["user"]["customer"], lines)
    r = await client.post(
        f"{API}/checkout",
        json=body(card) if card else body(),
        headers={**auth("customer"), "Idempotency-Key": key},
    )
    assert r.status_code == (402 if card else 201), r.text
    return int(r.json()["order"]["id"] if card else r.json()["id"])


async def _list(client: AsyncClient, who: str, **params: Any) -> Any:
    r = await client.get(f"{API}/fulfillment/orders", params=params, headers=auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def _warehouses(order: dict[str, Any]) -> list[tuple[int, list[tuple[str, int]], str | None]]:
    return [
        (
            w["warehouse_id"],
            [(line["title"], line["quantity"]) for line in w["lines"]],
            w["shipment"]["tracking_number"] if w["shipment"] else None,
        )
        for w in order["warehouses"]
    ]


async def test_sellers_see_their_orders_to_ship_by_warehouse(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    p, w1, w2 = catalog["product"], catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    sony = await _checkout(client, maker, catalog, {p["sony"]: 12}, "f-1")  # W1 10, W2 2
    anker = await _checkout(client, maker, catalog, {p["anker_q20"]: 1}, "f-2")
    failed = await _checkout(client, maker, catalog, {p["iphone"]: 1}, "f-3", DECLINED)

    acme = await _list(client, "acme")
    assert [o["id"] for o in acme["items"]] == [sony]
    assert acme["next_cursor"] is None
    assert _warehouses(acme["items"][0]) == [(w1, [(SONY, 10)], None), (w2, [(SONY, 2)], None)]
    assert acme["items"][0]["status"] == "paid"
    assert acme["items"][0]["shipping_address"] == {**ADDRESS, "line2": ""}
    globex = await _list(client, "globex")
    assert [(o["id"], _warehouses(o)) for o in globex["items"]] == [
        (anker, [(w1, [(ANKER, 1)], None)])
    ]
    admin = await _list(client, "admin")
    assert [o["id"] for o in admin["items"]] == [anker, sony]
    declined = await _list(client, "admin", status="payment_failed")
    assert [(o["id"], o["warehouses"]) for o in declined["items"]] == [(failed, [])]

    r = await client.post(
        f"{API}/orders/{sony}/ship",
        json={"warehouse_id": w1, "tracking_number": "TRK1"},
        headers=auth("acme"),
    )
    assert r.json()["status"] == "partially_shipped"
    acme = await _list(client, "acme")
    assert [(o["status"], _warehouses(o)) for o in acme["items"]] == [
        ("partially_shipped", [(w1, [(SONY, 10)], "TRK1"), (w2, [(SONY, 2)], None)])
    ]
    r = await client.post(
        f"{API}/orders/{sony}/ship",
        json={"warehouse_id": w2, "tracking_number": "TRK2"},
        headers=auth("acme"),
    )
    assert r.json()["status"] == "shipped"
    assert (await _list(client, "acme"))["items"] == []
    shipped = await _list(client, "acme", status=["shipped", "delivered"])
    assert [_warehouses(o) for o in shipped["items"]] == [
        [(w1, [(SONY, 10)], "TRK1"), (w2, [(SONY, 2)], "TRK2")]
    ]

    r = await client.get(f"{API}/fulfillment/orders/{sony}", headers=auth("acme"))
    assert r.status_code == 200
    assert r.json() == shipped["items"][0]
    # Another seller's order, an unknown one: the same 404.
    for who, oid in (("globex", sony), ("acme", anker), ("admin", 10**12)):
        r = await client.get(f"{API}/fulfillment/orders/{oid}", headers=auth(who))
        assert (r.status_code, r.json()["error"]) == (404, "order_not_found")


async def test_fulfillment_pages_and_refuses_bad_input(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    anker = catalog["product"]["anker_q20"]
    ids = [await _checkout(client, maker, catalog, {anker: 1}, f"p-{i}") for i in range(3)]
    first = await _list(client, "globex", limit=2)
    assert [o["id"] for o in first["items"]] == [ids[2], ids[1]]
    rest = await _list(client, "globex", limit=2, cursor=first["next_cursor"])
    assert ([o["id"] for o in rest["items"]], rest["next_cursor"]) == ([ids[0]], None)

    for params, code in (
        ({"status": "lost"}, "invalid_input"),
        ({"limit": 1000}, "invalid_input"),
        ({"limit": 0}, "invalid_input"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ):
        r = await client.get(f"{API}/fulfillment/orders", params=params, headers=auth("admin"))
        assert (r.status_code, r.json()["error"]) == (422, code), params
    for path in ("/fulfillment/orders", f"/fulfillment/orders/{ids[0]}"):
        r = await client.get(f"{API}{path}", headers=auth("customer"))
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        r = await client.get(f"{API}{path}")
        assert r.status_code == 401
    r = await client.get(f"{API}/fulfillment/orders/abc", headers=auth("admin"))
    assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
