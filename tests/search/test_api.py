from __future__ import annotations

import shutil
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from emporium.kit.metrics import DB_STATEMENTS
from emporium.search.indexer import SearchIndexer, rebuild
from tests.fixtures import auth

API = "/api/v1/search"


@pytest.fixture
async def indexed(app: FastAPI, catalog: dict[str, Any]) -> dict[str, Any]:
    await rebuild(app.state.sessionmaker, app.state.search.index)
    return catalog


def ids(body: dict[str, Any]) -> list[int]:
    return [i["id"] for i in body["items"]]


async def test_title_matches_rank_above_description(
    client: AsyncClient, indexed: dict[str, Any]
) -> None:
    p = indexed["product"]
    body = (await client.get(API, params={"q": "headphones"})).json()
    assert body["backend"] == "tantivy"
    assert body["total"] == 4
    assert set(ids(body)[:3]) == {p["sony"], p["bose"], p["anker_q20"]}
    assert ids(body)[3] == p["cable"]  # only its description mentions headphones
    assert body["corrected"] is False


async def test_facets_over_all_matches(client: AsyncClient, indexed: dict[str, Any]) -> None:
    c = indexed["category"]
    body = (await client.get(API, params={"page_size": 2})).json()
    assert body["total"] == 9
    assert len(body["items"]) == 2
    f = body["facets"]
    assert {x["slug"]: x["count"] for x in f["category"]} == {
        "headphones": 3,
        "phones": 3,
        "kitchen": 3,
    }
    assert {x["id"] for x in f["category"]} == {c["headphones"], c["phones"], c["kitchen"]}
    assert {x["value"]: x["count"] for x in f["brand"]} == {
        "Anker": 2,
        "Apple": 1,
        "Bose": 1,
        "KitchenAid": 1,
        "Ninja": 1,
        "Samsung": 1,
        "Sony": 1,
    }
    assert f["brand"][0] == {"value": "Anker", "count": 2}
    assert [(x["key"], x["count"]) for x in f["price_range"]] == [
        ("<25", 2),
        ("25–50", 1),
        ("50–100", 1),
        ("≥100", 5),
    ]
    assert [(x["key"], x["count"]) for x in f["rating"]] == [
        ("4+", 7),
        ("3+", 8),
        ("2+", 8),
        ("1+", 8),
    ]
    assert f["in_stock"] == [{"value": True, "count": 8}, {"value": False, "count": 1}]


async def test_empty_query_sorts_by_popularity(
    client: AsyncClient, indexed: dict[str, Any]
) -> None:
    p = indexed["product"]
    body = (await client.get(API, params={"page_size": 3})).json()
    assert ids(body) == [p["cable"], p["anker_q20"], p["mixer"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"brand": "Anker"}, {"anker_q20", "cable"}),
        ({"brand": ["Anker", "Sony"]}, {"anker_q20", "cable", "sony"}),
        ({"price_min": "50", "price_max": "400"}, {"coffee", "bose", "sony"}),
        ({"in_stock": "false"}, {"bose"}),
        ({"category": "electronics"}, {"sony", "bose", "anker_q20", "iphone", "galaxy", "cable"}),
        ({"category": "audio", "q": "noise"}, {"sony", "anker_q20"}),
        ({"rating_min": "4.5"}, {"sony", "bose", "iphone", "galaxy", "mixer"}),
        ({"q": '"noise cancelling"'}, {"sony", "anker_q20"}),
        ({"q": "charge"}, {"cable", "galaxy"}),  # stemming: charging ~ charge
    ],
)
async def test_filters(
    client: AsyncClient, indexed: dict[str, Any], params: dict[str, Any], expected: set[str]
) -> None:
    p = indexed["product"]
    body = (await client.get(API, params=params)).json()
    assert set(ids(body)) == {p[k] for k in expected}
    assert body["total"] == len(expected)


async def test_sort_by_price(client: AsyncClient, indexed: dict[str, Any]) -> None:
    p = indexed["product"]
    body = (await client.get(API, params={"sort": "price_asc"})).json()
    order = ["cable", "timer", "anker_q20", "coffee", "bose", "sony", "mixer", "galaxy", "iphone"]
    assert ids(body) == [p[k] for k in order]
    assert [i["price"] for i in body["items"][:2]] == ["12.99", "24.99"]
    body = (await client.get(API, params={"sort": "price_desc", "page_size": 2, "page": 2})).json()
    assert ids(body) == [p["mixer"], p["sony"]]


async def test_typo_tolerance(client: AsyncClient, indexed: dict[str, Any]) -> None:
    body = (await client.get(API, params={"q": "samsnug"})).json()
    assert body["corrected"] is True
    assert ids(body) == [indexed["product"]["galaxy"]]


@pytest.mark.parametrize(
    "q",
    [
        'title:(foo AND "bar',
        "((((",
        'headphones"',
        "*:*",
        "a^2~3",
        "-",
        "AND OR NOT",
        "🎧 \\ / ! ? [ ] { }",
        "x" * 500,
    ],
)
async def test_syntax_characters_never_fail(
    client: AsyncClient, indexed: dict[str, Any], q: str
) -> None:
    r = await client.get(API, params={"q": q})
    assert r.status_code == 200, r.text
    assert r.json()["backend"] == "tantivy"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"price_min": "100", "price_max": "10"}, "invalid_price_range"),
        ({"page": 0}, "invalid_input"),
        ({"page": -3}, "invalid_input"),
        ({"page": 10**9}, "invalid_input"),
        ({"page_size": 101}, "invalid_input"),
        ({"page": 600, "page_size": 20}, "page_out_of_range"),
        ({"q": "x" * 501}, "invalid_input"),
        ({"price_min": "-1"}, "invalid_input"),
        ({"rating_min": "6"}, "invalid_input"),
        ({"sort": "cheapest"}, "invalid_input"),
        ({"in_stock": "maybe"}, "invalid_input"),
    ],
)
async def test_bad_parameters_are_422(
    client: AsyncClient, indexed: dict[str, Any], params: dict[str, Any], code: str
) -> None:
    r = await client.get(API, params=params)
    assert (r.status_code, r.json()["error"]) == (422, code)


async def test_unknown_category_is_404(client: AsyncClient, indexed: dict[str, Any]) -> None:
    r = await client.get(API, params={"category": "no-such-category"})
    assert (r.status_code, r.json()["error"]) == (404, "category_not_found")


async def test_suggest(client: AsyncClient, indexed: dict[str, Any]) -> None:
    p = indexed["product"]
    body = (await client.get(f"{API}/suggest", params={"q": "ank"})).json()
    assert body["suggestions"] == [
        {"text": "Anker", "kind": "brand", "product_id": None},
        {"text": "Anker USB-C Charging Cable", "kind": "product", "product_id": p["cable"]},
        {
            "text": "Anker Soundcore Life Q20 Headphones",
            "kind": "product",
            "product_id": p["anker_q20"],
        },
    ]
    assert (await client.get(f"{API}/suggest", params={"q": '"(*'})).json()["suggestions"] == []


async def test_fallback_to_postgres_has_same_shape(
    app: FastAPI, client: AsyncClient, indexed: dict[str, Any]
) -> None:
    params = {"q": "headphones", "page_size": 50}
    tantivy = (await client.get(API, params=params)).json()
    shutil.rmtree(app.state.search.index.root)
    fallback = (await client.get(API, params=params)).json()
    assert fallback["backend"] == "postgres"
    assert fallback["total"] == tantivy["total"] == 4
    assert set(ids(fallback)) == set(ids(tantivy))
    assert ids(fallback)[3] == indexed["product"]["cable"]
    assert fallback["facets"] == tantivy["facets"]
    all_pg = (await client.get(API)).json()
    assert all_pg["backend"] == "postgres"
    assert [(x["key"], x["count"]) for x in all_pg["facets"]["price_range"]] == [
        ("<25", 2),
        ("25–50", 1),
        ("50–100", 1),
        ("≥100", 5),
    ]
    detailed = (await client.get("/api/health/detailed")).json()
    assert detailed["checks"]["search_index"]["circuit_breaker"] == "open"
    ready = await client.get("/api/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["search_index"] == "down"


async def test_fallback_highlight_escapes_the_title_like_the_index(
    app: FastAPI, client: AsyncClient, indexed: dict[str, Any]
) -> None:
    title = 'Losi Drone <img src=x onerror=alert(1)> & "q"'
    body = {"title": title, "category_id": indexed["category"]["home"], "price": "30.00"}
    r = await client.post("/api/v1/products", json=body, headers=auth("acme"))
    assert r.status_code == 201
    shutil.rmtree(app.state.search.index.root)
    found = (await client.get(API, params={"q": "losi drone"})).json()
    assert found["backend"] == "postgres"
    assert [(i["id"], i["highlight"]) for i in found["items"]] == [
        (
            r.json()["id"],
            "<b>Losi</b> <b>Drone</b> &lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;",
        )
    ]
    # A title holding a marker character itself comes back escaped and unmarked.
    body["title"] = "Rotor \ue001Guard</b>"
    r = await client.post("/api/v1/products", json=body, headers=auth("acme"))
    found = (await client.get(API, params={"q": "rotor"})).json()
    assert [(i["id"], i["highlight"]) for i in found["items"]] == [
        (r.json()["id"], "Rotor \ue001Guard&lt;/b&gt;")
    ]
    # A description-only match gets the escaped title unmarked, as from the index.
    cable = indexed["product"]["cable"]
    found = (await client.get(API, params={"q": "headphones", "page_size": 50})).json()
    assert [i["highlight"] for i in found["items"] if i["id"] == cable] == [
        "Anker USB-C Charging Cable"
    ]


async def test_writes_reach_the_index_through_the_outbox(
    app: FastAPI, client: AsyncClient, indexed: dict[str, Any]
) -> None:
    dispatcher = app.state.dispatcher
    body = {
        "title": "Zebra Striped Umbrella",
        "category_id": indexed["category"]["home"],
        "price": "30.00",
    }
    created = (await client.post("/api/v1/products", json=body, headers=auth("acme"))).json()
    assert (await client.get(API, params={"q": "zebra"})).json()["total"] == 0
    assert await dispatcher.drain() == 1
    found = (await client.get(API, params={"q": "zebra"})).json()
    assert ids(found) == [created["id"]]
    assert found["items"][0]["in_stock"] is False

    w1 = indexed["warehouse"]["W1"]
    await client.put(
        f"/api/v1/products/{created['id']}/stock",
        json=[{"warehouse_id": w1, "quantity": 5}],
        headers=auth("acme"),
    )
    await client.patch(
        f"/api/v1/products/{created['id']}", json={"price": "25.50"}, headers=auth("acme")
    )
    assert await dispatcher.drain() == 2
    item = (await client.get(API, params={"q": "zebra"})).json()["items"][0]
    assert (item["in_stock"], item["price"]) == (True, "25.50")

    await client.delete(f"/api/v1/products/{created['id']}", headers=auth("acme"))
    assert await dispatcher.drain() == 1
    assert (await client.get(API, params={"q": "zebra"})).json()["total"] == 0
    assert await dispatcher.drain() == 0


@pytest.mark.parametrize("params", [{"q": "a\x00b"}, {"category": "\x00"}, {"brand": "So\x00ny"}])
async def test_nul_in_search_parameters_is_422(
    client: AsyncClient, indexed: dict[str, Any], params: dict[str, Any]
) -> None:
    r = await client.get(API, params=params)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
    r = await client.get(f"{API}/suggest", params={"q": "\x00"})
    assert r.status_code == 422


async def test_stock_events_rewrite_a_document_only_when_in_stock_flips(
    app: FastAPI, client: AsyncClient, indexed: dict[str, Any]
) -> None:
    dispatcher, index = app.state.dispatcher, app.state.search.index
    sony, w1, w2 = (
        indexed["product"]["sony"],
        indexed["warehouse"]["W1"],
        indexed["warehouse"]["W2"],
    )
    await client.put(
        f"/api/v1/products/{sony}/stock",
        json=[{"warehouse_id": w1, "quantity": 2}, {"warehouse_id": w2, "quantity": 0}],
        headers=auth("acme"),
    )
    await dispatcher.drain()

    def in_stock() -> bool:
        return index.in_stock([sony])[sony]

    def meta() -> bytes:
        return (index.root / index.generation() / "meta.json").read_bytes()

    # An indexer that has written nothing itself yet (as after a restart).
    fresh = SearchIndexer(index, app.state.sessionmaker, app.state.pool)
    cart = "/api/v1/cart/items"
    await client.post(cart, json={"product_id": sony, "quantity": 1}, headers=auth("customer"))
    before, statements = meta(), DB_STATEMENTS._value.get()
    await fresh.apply({sony}, stock_only={sony})
    # 1 of 2 held: nothing to rewrite, and one statement (the free units) tells so,
    # without loading the document.
    assert (in_stock(), meta(), DB_STATEMENTS._value.get() - statements) == (True, before, 1)
    await client.post(cart, json={"product_id": sony, "quantity": 1}, headers=auth("customer"))
    await fresh.apply({sony}, stock_only={sony})
    assert in_stock() is False
    # Through the outbox, as in the server: the last unit back flips it again.
    await dispatcher.drain()
    found = (await client.get(API, params={"q": "sony", "in_stock": "true"})).json()
    assert sony not in ids(found)
    await client.delete(f"{cart}/{sony}", headers=auth("customer"))
    assert await dispatcher.drain() == 1
    assert in_stock() is True


async def test_a_cart_change_reaches_the_cached_product_page_through_the_outbox(
    app: FastAPI, client: AsyncClient, indexed: dict[str, Any]
) -> None:
    sony, page = indexed["product"]["sony"], f"/api/v1/products/{indexed['product']['sony']}"
    await app.state.dispatcher.drain()
    before = (await client.get(page)).json()["available"]  # now cached
    r = await client.post(
        "/api/v1/cart/items", json={"product_id": sony, "quantity": 2}, headers=auth("customer")
    )
    assert r.status_code == 200
    assert await app.state.dispatcher.drain() == 1  # the reservation's stock event
    assert (await client.get(page)).json()["available"] == before - 2
