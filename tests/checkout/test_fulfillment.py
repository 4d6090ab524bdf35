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
NINJA = "Ninja Coffee Maker"
CABLE = "Anker USB-C Charging Cable"


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


async def test_a_seller_sees_only_its_own_units_of_an_order_shared_with_another(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    p, w1, w2 = catalog["product"], catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    # Acme's Sony: W1 10, W2 2; Globex's Anker from W1, its Ninja from W2.
    both = await _checkout(
        client, maker, catalog, {p["sony"]: 12, p["anker_q20"]: 1, p["coffee"]: 1}, "s-1"
    )
    # Acme's cable from W1, Globex's Ninja from W2: one warehouse each.
    apart = await _checkout(client, maker, catalog, {p["cable"]: 1, p["coffee"]: 1}, "s-2")

    admin = await _list(client, "admin")
    assert [(o["id"], _warehouses(o)) for o in admin["items"]] == [
        (apart, [(w1, [(CABLE, 1)], None), (w2, [(NINJA, 1)], None)]),
        (both, [(w1, [(SONY, 10), (ANKER, 1)], None), (w2, [(SONY, 2), (NINJA, 1)], None)]),
    ]
    acme = await _list(client, "acme")
    assert [(o["id"], _warehouses(o)) for o in acme["items"]] == [
        (apart, [(w1, [(CABLE, 1)], None)]),
        (both, [(w1, [(SONY, 10)], None), (w2, [(SONY, 2)], None)]),
    ]
    globex = await _list(client, "globex")
    assert [(o["id"], _warehouses(o)) for o in globex["items"]] == [
        (apart, [(w2, [(NINJA, 1)], None)]),
        (both, [(w1, [(ANKER, 1)], None), (w2, [(NINJA, 1)], None)]),
    ]
    # The rest of each order is the whole order's, as an admin sees it.
    for seen in (acme, globex):
        for mine, full in zip(seen["items"], admin["items"], strict=True):
            assert {**mine, "warehouses": None} == {**full, "warehouses": None}

    # The shipment of a warehouse shows with the units of each seller it carries.
    r = await client.post(
        f"{API}/orders/{both}/ship",
        json={"warehouse_id": w1, "tracking_number": "TRK-W1"},
        headers=auth("admin"),
    )
    assert r.json()["status"] == "partially_shipped"
    for who, lines in (
        ("acme", [(w1, [(SONY, 10)], "TRK-W1"), (w2, [(SONY, 2)], None)]),
        ("globex", [(w1, [(ANKER, 1)], "TRK-W1"), (w2, [(NINJA, 1)], None)]),
        (
            "admin",
            [(w1, [(SONY, 10), (ANKER, 1)], "TRK-W1"), (w2, [(SONY, 2), (NINJA, 1)], None)],
        ),
    ):
        r = await client.get(f"{API}/fulfillment/orders/{both}", headers=auth(who))
        assert r.status_code == 200, r.text
        assert (r.json()["status"], _warehouses(r.json())) == ("partially_shipped", lines)
        listed = await _list(client, who)
        assert [o for o in listed["items"] if o["id"] == both] == [r.json()]
    r = await client.get(f"{API}/fulfillment/orders/{apart}", headers=auth("globex"))
    assert _warehouses(r.json()) == [(w2, [(NINJA, 1)], None)]
