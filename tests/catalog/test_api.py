from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import AuditLog, OutboxEvent, Product
from tests.fixtures import auth

API = "/api/v1"


async def _count(maker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_category_tree_counts_include_descendants(
    client: AsyncClient, catalog: dict[str, Any]
) -> None:
    r = await client.get(f"{API}/categories")
    assert r.status_code == 200

    def flat(nodes: list[dict[str, Any]]) -> dict[str, tuple[int, list[str]]]:
        out: dict[str, tuple[int, list[str]]] = {}
        for n in nodes:
            out[n["slug"]] = (n["product_count"], [c["slug"] for c in n["children"]])
            out.update(flat(n["children"]))
        return out

    assert [n["slug"] for n in r.json()] == ["electronics", "home"]
    assert flat(r.json()) == {
        "electronics": (6, ["audio", "phones"]),
        "audio": (3, ["headphones"]),
        "headphones": (3, []),
        "phones": (3, []),
        "home": (3, ["kitchen"]),
        "kitchen": (3, []),
    }


async def test_browse_keyset_pagination_and_category(
    client: AsyncClient, catalog: dict[str, Any]
) -> None:
    p = catalog["product"]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"{API}/products", params=params)
        assert r.status_code == 200
        body = r.json()
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(p.values())

    r = await client.get(f"{API}/products", params={"category": "electronics", "limit": 100})
    assert [i["id"] for i in r.json()["items"]] == sorted(
        p[k] for k in ("sony", "bose", "anker_q20", "iphone", "galaxy", "cable")
    )
    r = await client.get(f"{API}/products", params={"category": str(catalog["category"]["audio"])})
    items = r.json()["items"]
    assert [i["id"] for i in items] == [p["sony"], p["bose"], p["anker_q20"]]
    assert [(i["available"], i["in_stock"]) for i in items] == [(15, True), (0, False), (100, True)]


async def test_browse_bad_input(client: AsyncClient, catalog: dict[str, Any]) -> None:
    r = await client.get(f"{API}/products", params={"category": "nope"})
    assert (r.status_code, r.json()["error"]) == (404, "category_not_found")
    # Digits int() refuses, though str.isdigit() accepts them.
    for key in ("²8", "8²", "٣"):
        r = await client.get(f"{API}/products", params={"category": key})
        assert (r.status_code, r.json()["error"]) == (404, "category_not_found")
    cursor = base64.urlsafe_b64encode("id:²".encode()).decode()
    r = await client.get(f"{API}/products", params={"cursor": cursor})
    assert (r.status_code, r.json()["error"]) == (422, "invalid_cursor")
    r = await client.get(f"{API}/products", params={"cursor": "!!garbage"})
    assert (r.status_code, r.json()["error"]) == (422, "invalid_cursor")
    r = await client.get(f"{API}/products", params={"limit": 101})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert r.json()["detail"][0]["field"] == "query.limit"


async def test_product_detail(client: AsyncClient, catalog: dict[str, Any]) -> None:
    pid = catalog["product"]["sony"]
    r = await client.get(f"{API}/products/{pid}")
    assert r.status_code == 200
    body = r.json()
    assert body["title"] == "Sony WH-1000XM5 Wireless Noise Cancelling Headphones"
    assert body["price"] == "349.99"
    assert body["rating"] == "4.7"
    assert body["available"] == 15
    assert body["in_stock"] is True
    assert body["category"] == {
        "id": catalog["category"]["headphones"],
        "name": "Headphones",
        "slug": "headphones",
    }
    assert body["seller"] == {"id": catalog["seller"]["acme"], "name": "Acme Corp"}


async def test_product_detail_errors(client: AsyncClient, catalog: dict[str, Any]) -> None:
    r = await client.get(f"{API}/products/999999")
    assert (r.status_code, r.json()["error"]) == (404, "product_not_found")
    r = await client.get(f"{API}/products/abc")
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "path.product_id"
    r = await client.get(f"{API}/products/{2**64}")
    assert r.status_code == 422


async def test_create_product_as_seller(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    body = {
        "title": "  Acme Rocket Skates ",
        "description": "Very fast.",
        "brand": "Acme",
        "category_id": catalog["category"]["kitchen"],
        "price": "19.90",
        "attributes": {"color": "red", "wheels": 4},
    }
    r = await client.post(f"{API}/products", json=body, headers=auth("acme"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["title"] == "Acme Rocket Skates"
    assert created["price"] == "19.90"
    assert created["seller"]["id"] == catalog["seller"]["acme"]
    assert created["available"] == 0
    assert created["attributes"] == {"color": "red", "wheels": 4}
    async with maker() as s:
        events = (await s.execute(select(OutboxEvent.topic, OutboxEvent.aggregate_id))).all()
        assert [tuple(e) for e in events] == [("product.created", str(created["id"]))]
        audit = (await s.execute(select(AuditLog))).scalars().all()
        assert [(a.action, a.new_values) for a in audit] == [
            ("product.created", {"title": "Acme Rocket Skates", "price": "19.90"})
        ]


async def test_create_product_rejections_change_nothing(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    good = {"title": "X", "category_id": catalog["category"]["kitchen"], "price": "1.00"}
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        ({}, good, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, good, 401, "unauthorized"),
        (auth("customer"), good, 403, "forbidden"),
        (auth("acme"), {**good, "price": "-1"}, 422, "invalid_input"),
        (auth("acme"), {**good, "price": "1.001"}, 422, "invalid_input"),
        (auth("acme"), {**good, "price": "abc"}, 422, "invalid_input"),
        (auth("acme"), {**good, "title": ""}, 422, "invalid_input"),
        (auth("acme"), {**good, "title": " \t "}, 422, "invalid_input"),
        (auth("acme"), {**good, "images": ["  "]}, 422, "invalid_input"),
        (auth("acme"), {**good, "category_id": 424242}, 404, "category_not_found"),
        (auth("acme"), {**good, "category_id": str(good["category_id"])}, 422, "invalid_input"),
        (
            auth("acme"),
            {**good, "seller_id": catalog["seller"]["globex"]},
            403,
            "not_product_owner",
        ),
        (auth("admin"), good, 422, "seller_id_required"),
        (auth("admin"), {**good, "seller_id": 777}, 404, "seller_not_found"),
    ]
    for headers, body, status, code in cases:
        r = await client.post(f"{API}/products", json=body, headers=headers)
        assert (r.status_code, r.json()["error"]) == (status, code), (body, r.text)
    r = await client.post(
        f"{API}/products",
        content=b'{"title": "X",',
        headers={**auth("acme"), "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]) == (422, "malformed_json")
    assert r.json()["detail"][0]["field"] == "body"
    assert await _count(maker, Product) == 9
    assert await _count(maker, OutboxEvent) == 0
    assert await _count(maker, AuditLog) == 0


async def test_price_change_is_audited_and_cache_invalidated(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid = catalog["product"]["sony"]
    assert (await client.get(f"{API}/products/{pid}")).json()["price"] == "349.99"  # now cached
    r = await client.patch(f"{API}/products/{pid}", json={"price": "299.99"}, headers=auth("acme"))
    assert r.status_code == 200, r.text
    assert r.json()["price"] == "299.99"
    assert (await client.get(f"{API}/products/{pid}")).json()["price"] == "299.99"
    async with maker() as s:
        rows = (await s.execute(select(AuditLog))).scalars().all()
    assert [(a.action, a.entity_id, a.old_values, a.new_values, a.actor_user_id) for a in rows] == [
        (
            "product.price_changed",
            str(pid),
            {"price": "349.99"},
            {"price": "299.99"},
            catalog["user"]["acme"],
        )
    ]


async def test_other_seller_cannot_update_or_delete(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid = catalog["product"]["sony"]
    r = await client.patch(f"{API}/products/{pid}", json={"price": "1.00"}, headers=auth("globex"))
    assert (r.status_code, r.json()["error"]) == (403, "not_product_owner")
    r = await client.delete(f"{API}/products/{pid}", headers=auth("globex"))
    assert r.status_code == 403
    async with maker() as s:
        product = await s.get(Product, pid)
        assert product is not None
        assert (product.price, product.is_active) == (Decimal("349.99"), True)
    assert await _count(maker, AuditLog) == 0
    assert await _count(maker, OutboxEvent) == 0


async def test_admin_updates_and_deletes(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    pid = catalog["product"]["bose"]
    r = await client.patch(
        f"{API}/products/{pid}", json={"title": "Bose QC45", "brand": "BOSE"}, headers=auth("admin")
    )
    assert (r.json()["title"], r.json()["brand"]) == ("Bose QC45", "BOSE")
    r = await client.delete(f"{API}/products/{pid}", headers=auth("admin"))
    assert r.status_code == 204
    assert (await client.get(f"{API}/products/{pid}")).status_code == 404
    assert (await client.delete(f"{API}/products/{pid}", headers=auth("admin"))).status_code == 404
    listed = (await client.get(f"{API}/products", params={"limit": 100})).json()["items"]
    assert pid not in [i["id"] for i in listed]
    async with maker() as s:
        actions = (await s.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars().all()
        topics = (
            (await s.execute(select(OutboxEvent.topic).order_by(OutboxEvent.id))).scalars().all()
        )
    assert list(actions) == ["product.updated", "product.deleted"]
    assert list(topics) == ["product.updated", "product.deleted"]


async def test_audit_log_is_append_only(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    import sqlalchemy.exc
    from sqlalchemy import delete, update

    pid = catalog["product"]["sony"]
    await client.patch(f"{API}/products/{pid}", json={"price": "1.00"}, headers=auth("acme"))
    for stmt in (update(AuditLog).values(action="tampered"), delete(AuditLog)):
        async with maker() as s:
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
                await s.execute(stmt)
    async with maker() as s:
        assert list((await s.execute(select(AuditLog.action))).scalars()) == [
            "product.price_changed"
        ]


async def test_nul_characters_are_rejected_without_side_effects(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    kitchen = catalog["category"]["kitchen"]
    bodies = [
        {"title": "bad\u0000title", "category_id": kitchen, "price": "1.00"},
        {"title": "ok", "description": "x\u0000", "category_id": kitchen, "price": "1.00"},
        {"title": "ok", "attributes": {"k\u0000": "v"}, "category_id": kitchen, "price": "1.00"},
        {"title": "ok", "attributes": {"k": "v\u0000"}, "category_id": kitchen, "price": "1.00"},
        {"title": "ok", "images": ["\u0000"], "category_id": kitchen, "price": "1.00"},
    ]
    for body in bodies:
        r = await client.post(f"{API}/products", json=body, headers=auth("acme"))
        assert (r.status_code, r.json()["error"]) == (422, "invalid_input"), body
    r = await client.get(f"{API}/products", params={"category": "a\x00b"})
    assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
    assert await _count(maker, Product) == 9
    assert await _count(maker, AuditLog) == 0


async def test_database_data_exceptions_become_422(
    app: FastAPI, maker: async_sessionmaker[AsyncSession]
) -> None:
    import json as jsonlib

    import sqlalchemy.exc
    from sqlalchemy import text
    from starlette.requests import Request

    from emporium.kit.errors import _database_error

    async with maker() as s:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            await s.execute(text("SELECT 1 / 0"))
    response = await _database_error(Request({"type": "http", "app": app}), caught.value)
    assert response.status_code == 422
    assert jsonlib.loads(bytes(response.body))["error"] == "invalid_input"


async def test_a_database_out_of_connections_becomes_503(app: FastAPI) -> None:
    import json as jsonlib

    import asyncpg
    from sqlalchemy import text
    from starlette.requests import Request

    from emporium.kit.errors import _database_error

    engine = app.state.engine
    async with engine.begin() as conn:
        await conn.execute(text("DROP ROLE IF EXISTS emporium_no_slots"))
        await conn.execute(text("CREATE ROLE emporium_no_slots LOGIN CONNECTION LIMIT 0"))
    try:
        dsn = engine.url.set(drivername="postgresql", username="emporium_no_slots")
        with pytest.raises(asyncpg.TooManyConnectionsError) as caught:
            await asyncpg.connect(dsn.render_as_string(hide_password=False))
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP ROLE emporium_no_slots"))
    response = await _database_error(Request({"type": "http", "app": app}), caught.value)
    assert (response.status_code, response.headers["retry-after"]) == (503, "1")
    assert jsonlib.loads(bytes(response.body))["error"] == "database_unavailable"
