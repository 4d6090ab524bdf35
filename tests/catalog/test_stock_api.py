from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import AuditLog, Stock
from tests.fixtures import auth

API = "/api/v1"


async def _levels(maker: async_sessionmaker[AsyncSession], pid: int) -> list[tuple[int, int, int]]:
    async with maker() as s:
        rows = await s.execute(
            select(Stock.warehouse_id, Stock.quantity, Stock.reserved)
            .where(Stock.product_id == pid)
            .order_by(Stock.warehouse_id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_warehouses(client: AsyncClient, catalog: dict[str, Any]) -> None:
    r = await client.get(f"{API}/warehouses")
    assert r.json() == [
        {"id": catalog["warehouse"]["W1"], "code": "W1", "name": "Warehouse W1"},
        {"id": catalog["warehouse"]["W2"], "code": "W2", "name": "Warehouse W2"},
    ]


async def test_get_and_set_stock(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid, w1, w2 = catalog["product"]["sony"], catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    r = await client.get(f"{API}/products/{pid}/stock")
    assert r.json() == {
        "product_id": pid,
        "available": 15,
        "levels": [
            {
                "warehouse_id": w1,
                "warehouse_code": "W1",
                "quantity": 10,
                "reserved": 0,
                "available": 10,
            },
            {
                "warehouse_id": w2,
                "warehouse_code": "W2",
                "quantity": 5,
                "reserved": 0,
                "available": 5,
            },
        ],
    }
    r = await client.put(
        f"{API}/products/{pid}/stock",
        json=[{"warehouse_id": w1, "quantity": 40}, {"warehouse_id": w2, "quantity": 5}],
        headers=auth("acme"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["available"] == 45
    assert await _levels(maker, pid) == [(w1, 40, 0), (w2, 5, 0)]
    assert (await client.get(f"{API}/products/{pid}")).json()["available"] == 45
    async with maker() as s:
        audit = (await s.execute(select(AuditLog))).scalars().all()
    assert [(a.action, a.old_values, a.new_values) for a in audit] == [
        ("stock.changed", {"quantity": {str(w1): 10}}, {"quantity": {str(w1): 40}})
    ]


async def test_set_stock_rejections_change_nothing(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid, w1 = catalog["product"]["sony"], catalog["warehouse"]["W1"]
    before = await _levels(maker, pid)
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        (auth("acme"), [{"warehouse_id": w1, "quantity": -1}], 422, "invalid_input"),
        (auth("acme"), [{"warehouse_id": w1, "quantity": "many"}], 422, "invalid_input"),
        (auth("acme"), [{"warehouse_id": w1, "quantity": "7"}], 422, "invalid_input"),
        (auth("acme"), [{"warehouse_id": True, "quantity": 7}], 422, "invalid_input"),
        (
            auth("acme"),
            [{"warehouse_id": w1, "quantity": 1}, {"warehouse_id": w1, "quantity": 2}],
            422,
            "invalid_input",
        ),
        (auth("acme"), [], 422, "invalid_input"),
        (auth("acme"), {"warehouse_id": w1, "quantity": 1}, 422, "invalid_input"),
        (
            auth("acme"),
            [{"warehouse_id": w1, "quantity": 3}, {"warehouse_id": 9999, "quantity": 3}],
            404,
            "warehouse_not_found",
        ),
        (auth("globex"), [{"warehouse_id": w1, "quantity": 3}], 403, "not_product_owner"),
        (auth("customer"), [{"warehouse_id": w1, "quantity": 3}], 403, "forbidden"),
        ({}, [{"warehouse_id": w1, "quantity": 3}], 401, "unauthorized"),
    ]
    for headers, body, status, code in cases:
        r = await client.put(f"{API}/products/{pid}/stock", json=body, headers=headers)
        assert (r.status_code, r.json()["error"]) == (status, code), (body, r.text)
    r = await client.put(
        f"{API}/products/424242/stock",
        json=[{"warehouse_id": w1, "quantity": 1}],
        headers=auth("admin"),
    )
    assert (r.status_code, r.json()["error"]) == (404, "product_not_found")
    assert await _levels(maker, pid) == before
    async with maker() as s:
        assert (await s.execute(select(AuditLog))).scalars().all() == []


async def test_stock_cannot_drop_below_reserved(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid, w1 = catalog["product"]["sony"], catalog["warehouse"]["W1"]
    async with maker() as s, s.begin():
        await s.execute(
            update(Stock)
            .where(Stock.product_id == pid, Stock.warehouse_id == w1)
            .values(reserved=4)
        )
    r = await client.put(
        f"{API}/products/{pid}/stock",
        json=[{"warehouse_id": w1, "quantity": 3}],
        headers=auth("acme"),
    )
    assert r.status_code == 409
    assert r.json() == {
        "error": "stock_below_reserved",
        "detail": {"warehouse_id": w1, "reserved": 4, "requested": 3},
    }
    assert (await _levels(maker, pid))[0] == (w1, 10, 4)
    r = await client.put(
        f"{API}/products/{pid}/stock",
        json=[{"warehouse_id": w1, "quantity": 4}],
        headers=auth("acme"),
    )
    assert r.status_code == 200
    assert r.json()["levels"][0]["available"] == 0
