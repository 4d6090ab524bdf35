from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.checkout.schemas import CheckoutRequest
from emporium.models import AuditLog, Order, OutboxEvent
from tests.checkout.helpers import (
    ADDRESS,
    DECLINED,
    VISA,
    body,
    cart_state,
    charges,
    count,
    fill_cart,
    key,
    stock_of,
)
from tests.fixtures import auth

API = "/api/v1"


async def test_checkout_pays_takes_stock_and_empties_cart(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 2, cable: 3})
    assert await stock_of(maker, sony) == [(10, 2), (5, 0)]

    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-1"))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "paid"
    assert order["subtotal"] == order["total"] == "738.95"  # 2 × 349.99 + 3 × 12.99
    assert [
        (i["product_id"], i["unit_price"], i["quantity"], i["line_total"]) for i in order["items"]
    ] == [
        (sony, "349.99", 2, "699.98"),
        (cable, "12.99", 3, "38.97"),
    ]
    assert [t["status"] for t in order["timeline"]] == ["pending_payment", "paid"]
    assert order["payment"] == {
        "status": "captured",
        "amount": "738.95",
        "card_last4": "4242",
        "error_code": None,
    }
    assert await stock_of(maker, sony) == [(8, 0), (5, 0)]
    assert await stock_of(maker, cable) == [(47, 0), (50, 0)]
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}
    assert charges(app) == 1
    async with maker() as s:
        actions = list((await s.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars())
        events = (
            await s.execute(
                select(OutboxEvent.topic, OutboxEvent.aggregate_id)
                .where(OutboxEvent.topic.in_(("stock.changed", "order.created", "order.paid")))
                .order_by(OutboxEvent.id)
            )
        ).all()
    assert actions == [
        "inventory.reserved",
        "inventory.reserved",  # filling the cart
        "order.created",
        "payment.completed",
        "inventory.adjusted",
        "inventory.adjusted",
    ]
    # Paying leaves what is free to reserve as it was: no stock.changed of its own.
    assert [tuple(e) for e in events] == [
        ("stock.changed", str(sony)),
        ("stock.changed", str(cable)),
        ("order.created", str(order["id"])),
        ("order.paid", str(order["id"])),
    ]

    again = await client.post(f"{API}/checkout", json=body(), headers=key("k-1"))
    assert (again.status_code, again.json()) == (201, order)
    assert await count(maker, Order) == 1
    assert charges(app) == 1


async def test_same_key_with_another_body_is_422_and_changes_nothing(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["sony"]: 1})
    assert (
        await client.post(f"{API}/checkout", json=body(), headers=key("k-2"))
    ).status_code == 201
    other = body()
    other["shipping_address"] = {**other["shipping_address"], "city": "Paris"}
    r = await client.post(f"{API}/checkout", json=other, headers=key("k-2"))
    assert (r.status_code, r.json()["error"]) == (422, "idempotency_key_reused")
    assert await count(maker, Order) == 1
    assert charges(app) == 1


async def test_declined_card_returns_units_to_the_cart(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, customer = catalog["product"]["sony"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 2})
    r = await client.post(f"{API}/checkout", json=body(DECLINED), headers=key("k-3"))
    assert r.status_code == 402
    assert (r.json()["error"], r.json()["decline_code"]) == ("payment_declined", "card_declined")
    assert r.json()["order"]["status"] == "payment_failed"
    assert await stock_of(maker, sony) == [(10, 2), (5, 0)]
    assert await cart_state(maker, customer) == {"lines": {sony: 2}, "reserved": {sony: 2}}
    assert charges(app) == 0
    # Another card, another key: the same cart now goes through.
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-4"))
    assert (r.status_code, r.json()["status"]) == (201, "paid")
    assert await stock_of(maker, sony) == [(8, 0), (5, 0)]


async def test_checkout_rejections(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    r = await client.post(f"{API}/checkout", json=body(), headers=auth("customer"))
    assert (r.status_code, r.json()["detail"][0]["field"]) == (422, "header.Idempotency-Key")
    r = await client.post(f"{API}/checkout", json=body(), headers={"Idempotency-Key": "x"})
    assert r.status_code == 401
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-5"))
    assert (r.status_code, r.json()["error"]) == (409, "cart_empty")
    bad = body({"card_number": "42", "exp": "13/30", "cvc": "1"})
    r = await client.post(f"{API}/checkout", json=bad, headers=key("k-6"))
    assert (r.status_code, r.json()["detail"]) == (
        422,
        [
            {
                "field": "payment.card_number",
                "message": "card number must be 12–19 digits",
                "type": "card_number_invalid",
            },
            {
                "field": "payment.exp",
                "message": "expiry must be a month and year, as MM/YY or MM/YYYY",
                "type": "card_expiry_invalid",
            },
            {
                "field": "payment.cvc",
                "message": "CVC must be 3 or 4 digits",
                "type": "card_cvc_invalid",
            },
        ],
    )
    # The key of a request that changed nothing can be used again.
    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["cable"]: 1})
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-5"))
    assert r.status_code == 201
    assert await count(maker, Order) == 1


async def test_a_card_is_read_as_it_is_printed(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 1})
    refused = [
        ("card_number", "4242.4242.4242.4242", "card_number_invalid"),
        ("card_number", "4242 4242 4242 4242 4242", "card_number_invalid"),
        ("card_number", "４２４２４２４２４２４２４２４２", "card_number_invalid"),
        ("exp", "0/30", "card_expiry_invalid"),
        ("exp", "13/30", "card_expiry_invalid"),
        ("exp", "1/3", "card_expiry_invalid"),
        ("exp", "12-30", "card_expiry_invalid"),
        ("cvc", "12 3", "card_cvc_invalid"),
    ]
    for i, (field, value, kind) in enumerate(refused):
        r = await client.post(
            f"{API}/checkout", json=body({**VISA, field: value}), headers=key(f"bad-{i}")
        )
        assert r.status_code == 422, (field, value)
        assert [(d["field"], d["type"]) for d in r.json()["detail"]] == [(f"payment.{field}", kind)]
    assert (await count(maker, Order), charges(app)) == (0, 0)
    assert await cart_state(maker, customer) == {"lines": {cable: 1}, "reserved": {cable: 1}}
    typed = [
        {"card_number": "4242 4242 4242 4242", "exp": "12/30"},
        {"card_number": "4242-4242-4242-4242", "exp": "1/30"},
        {"card_number": " 4242 4242-4242 4242 ", "exp": " 01/2030 "},
        {"card_number": "4242424242424242", "exp": "1/2030"},
    ]
    for i, card in enumerate(typed):
        if i:
            await fill_cart(maker, customer, {cable: 1})
        r = await client.post(
            f"{API}/checkout", json=body({**VISA, **card}), headers=key(f"ok-{i}")
        )
        assert r.status_code == 201, (card, r.text)
        assert r.json()["payment"] == {
            "status": "captured",
            "amount": "12.99",
            "card_last4": "4242",
            "error_code": None,
        }
    assert (await count(maker, Order), charges(app)) == (4, 4)


async def test_the_country_must_be_an_iso_code(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, customer = catalog["product"]["sony"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 1})
    for i, country in enumerate(["ZZ", "GBR", "", "1A"]):
        bad = {**body(), "shipping_address": {**ADDRESS, "country": country}}
        r = await client.post(f"{API}/checkout", json=bad, headers=key(f"c-{i}"))
        assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
        assert r.json()["detail"][0]["field"] == "shipping_address.country"
    assert (await count(maker, Order), charges(app)) == (0, 0)
    assert await cart_state(maker, customer) == {"lines": {sony: 1}, "reserved": {sony: 1}}
    # Lower case is understood, and stored as the code.
    lower = {**body(), "shipping_address": {**ADDRESS, "country": " gb "}}
    r = await client.post(f"{API}/checkout", json=lower, headers=key("c-9"))
    assert r.status_code == 201, r.text
    assert r.json()["shipping_address"]["country"] == "GB"


async def test_blank_required_address_fields_are_refused_like_empty_ones(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, customer = catalog["product"]["sony"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 1})
    blank = {"name": "   ", "line1": "   ", "city": "\t", "postal_code": " \n "}
    # Zero-width and byte-order marks print as nothing, like spaces.
    invisible = [("line1", ""), ("name", "\u200b"), ("city", " \ufeff\u2060 ")]
    for i, (field, value) in enumerate([*blank.items(), *invisible]):
        bad = {**body(), "shipping_address": {**ADDRESS, field: value}}
        r = await client.post(f"{API}/checkout", json=bad, headers=key(f"b-{i}"))
        assert r.status_code == 422, (field, r.text)
        assert r.json()["error"] == "invalid_input"
        assert r.json()["detail"] == [
            {
                "field": f"shipping_address.{field}",
                "message": "String should have at least 1 character",
                "type": "too_short",
            }
        ]
    long = {**body(), "shipping_address": {**ADDRESS, "postal_code": " " + "9" * 21}}
    r = await client.post(f"{API}/checkout", json=long, headers=key("b-long"))
    assert (r.status_code, r.json()["detail"]) == (
        422,
        [
            {
                "field": "shipping_address.postal_code",
                "message": "String should have at most 20 characters",
                "type": "too_long",
            }
        ],
    )
    all_blank = {**body(), "shipping_address": {**ADDRESS, **blank}}
    r = await client.post(f"{API}/checkout", json=all_blank, headers=key("b-all"))
    assert r.status_code == 422
    assert sorted(d["field"] for d in r.json()["detail"]) == [
        "shipping_address.city",
        "shipping_address.line1",
        "shipping_address.name",
        "shipping_address.postal_code",
    ]
    assert (await count(maker, Order), charges(app)) == (0, 0)
    assert await cart_state(maker, customer) == {"lines": {sony: 1}, "reserved": {sony: 1}}
    assert await stock_of(maker, sony) == [(10, 1), (5, 0)]
    # Text around the value is trimmed, and an optional line may be left blank.
    padded = {
        **body(),
        "shipping_address": {**ADDRESS, "city": "\u200b London\t", "line2": " \u200b "},
    }
    r = await client.post(f"{API}/checkout", json=padded, headers=key("b-ok"))
    assert r.status_code == 201, r.text
    assert r.json()["shipping_address"] == {**ADDRESS, "line2": ""}


async def test_parallel_requests_with_one_key_make_one_order_and_one_charge(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["cable"]: 1})
    responses = await asyncio.gather(
        *(client.post(f"{API}/checkout", json=body(), headers=key("same")) for _ in range(100))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    assert statuses.count(201) >= 1
    assert all(
        r.json()["error"] == "idempotency_key_in_progress"
        for r in responses
        if r.status_code == 409
    )
    assert await count(maker, Order) == 1
    assert charges(app) == 1


async def test_open_breaker_fails_fast_and_keeps_the_cart(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, customer = catalog["product"]["sony"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 1})
    breaker = app.state.gateway.breaker
    breaker._open()
    breaker._opened_at -= 20.5  # opened 20.5 s ago: a trial call is let through in 39.5 s
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-7"))
    assert (r.status_code, r.json()["error"]) == (503, "payment_unavailable")
    assert (r.json()["retry_after"], r.headers["retry-after"]) == (40, "40")
    assert await count(maker, Order) == 0
    assert await cart_state(maker, customer) == {"lines": {sony: 1}, "reserved": {sony: 1}}
    assert await stock_of(maker, sony) == [(10, 1), (5, 0)]
    # Another buyer with nothing in the cart is told so, not to wait for the gateway.
    r = await client.post(
        f"{API}/checkout", json=body(), headers={**auth("acme"), "Idempotency-Key": "k-7"}
    )
    assert (r.status_code, r.json()["error"]) == (409, "cart_empty")
    assert await count(maker, Order) == 0


async def test_another_users_order_is_404(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["cable"]: 1})
    order = (await client.post(f"{API}/checkout", json=body(), headers=key("k-8"))).json()
    r = await client.get(f"{API}/orders/{order['id']}", headers=auth("acme"))
    assert (r.status_code, r.json()["error"]) == (404, "order_not_found")
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("acme"))
    assert r.status_code == 404
    mine = (await client.get(f"{API}/orders", headers=auth("customer"))).json()
    assert [o["id"] for o in mine["items"]] == [order["id"]]
    assert (await client.get(f"{API}/orders", headers=auth("acme"))).json()["items"] == []
    r = await client.get(f"{API}/orders/{order['id']}", headers=auth("customer"))
    assert r.json()["status"] == "paid"


async def test_checkout_stays_within_its_statement_budget(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    from emporium.kit.metrics import DB_STATEMENTS

    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["sony"]: 1})
    before = DB_STATEMENTS._value.get()
    r = await client.post(f"{API}/checkout", json=body(), headers=key("budget"))
    spent = DB_STATEMENTS._value.get() - before
    assert r.status_code == 201
    # The caller, checkout_place and the payment: far inside the budget of 20.
    assert spent == 3, spent
    # The response built without reading back equals what a later read returns.
    read = await client.get(f"{API}/orders/{r.json()['id']}", headers=auth("customer"))
    assert read.json() == r.json()


async def test_a_returning_api_client_checks_out_without_a_lookup_connection(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    from emporium.kit.metrics import DB_STATEMENTS

    taken: list[int] = []

    class CountingPool:
        """The checkout pool, counting the connections taken from it."""

        def __init__(self, pool: Any) -> None:
            self.pool = pool

        def acquire(self, *args: Any, **kwargs: Any) -> Any:
            taken.append(1)
            return self.pool.acquire(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pool, name)

    counting = CountingPool(app.state.checkout_pool)
    app.state.checkout_pool = app.state.checkout.pool = app.state.checkout.batches.pool = counting
    spent = []
    for n in range(2):
        await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["sony"]: 1})
        taken.clear()
        before = DB_STATEMENTS._value.get()
        r = await client.post(f"{API}/checkout", json=body(), headers=key(f"warm-{n}"))
        assert r.status_code == 201
        spent.append((DB_STATEMENTS._value.get() - before, len(taken)))
    # The first checkout reads the caller on a connection of its own; the second finds
    # the caller cached and takes connections only to place the order and to pay.
    assert spent == [(3, 3), (2, 2)]


async def test_checkout_has_connections_of_its_own(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    # A sell-out's add-to-cart requests can hold every connection of the main pool while
    # they queue for the stock rows; buyers who are paying must still get through.
    sony = catalog["product"]["sony"]
    await fill_cart(maker, catalog["user"]["customer"], {sony: 1})
    pool = app.state.pool
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        # Without its own pool the checkout would wait for a connection indefinitely.
        r = await asyncio.wait_for(
            client.post(f"{API}/checkout", json=body(), headers=key("k-bulkhead")), 30
        )
    finally:
        for conn in held:
            await pool.release(conn)
    assert (r.status_code, r.json()["status"]) == (201, "paid")
    assert await stock_of(maker, sony) == [(9, 0), (5, 0)]


async def test_a_paid_answer_is_replayed_from_postgresql_then_from_valkey(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {catalog["product"]["cable"]: 1})
    idem = app.state.checkout.idempotency
    vkey = idem._vkey(customer, "k-replay")
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-replay"))
    assert r.status_code == 201
    # The paid answer lives in PostgreSQL only; Valkey keeps the claim.
    marker = json.loads(await app.state.cache.client.get(vkey))
    assert set(marker) == {"hash", "state"}
    assert marker["state"] == "processing"
    again = await client.post(f"{API}/checkout", json=body(), headers=key("k-replay"))
    # The same bytes, key order included, not only the same content.
    assert (again.status_code, again.content) == (201, r.content)
    # PostgreSQL's answer is now kept for the next replay.
    kept = json.loads(await app.state.cache.client.get(vkey))
    assert (kept["state"], kept["status"], kept["body"]) == ("completed", 201, r.json())
    third = await client.post(f"{API}/checkout", json=body(), headers=key("k-replay"))
    assert (third.status_code, third.content) == (201, r.content)
    assert await count(maker, Order) == 1
    assert charges(app) == 1


async def test_a_duplicate_in_progress_leaves_the_first_requests_claim(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {catalog["product"]["cable"]: 1})
    idem = app.state.checkout.idempotency
    payload = body()
    digest = idem.digest(CheckoutRequest.model_validate(payload).model_dump(mode="json"))
    # A first request that has claimed the key in both stores and is still paying.
    assert (await idem.claim_fast(customer, "k-busy", digest)).claimed
    async with maker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO idempotency_keys (user_id, key, request_hash)"
                " VALUES (:u, 'k-busy', :h)"
            ),
            {"u": customer, "h": digest},
        )
    r = await client.post(f"{API}/checkout", json=payload, headers=key("k-busy"))
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_in_progress")
    marker = json.loads(await app.state.cache.client.get(idem._vkey(customer, "k-busy")))
    assert marker == {"hash": digest, "state": "processing"}
    assert await count(maker, Order) == 0
    assert await cart_state(maker, customer) == {
        "lines": {catalog["product"]["cable"]: 1},
        "reserved": {catalog["product"]["cable"]: 1},
    }


async def test_bad_credentials_are_answered_before_bad_input(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    customer, cable = catalog["user"]["customer"], catalog["product"]["cable"]
    await fill_cart(maker, customer, {cable: 1})
    before = await cart_state(maker, customer)
    nobody = {"Authorization": "Bearer not-a-token"}
    requests = [
        ("/checkout", {"payment": 1}, nobody),  # no Idempotency-Key either
        ("/checkout", body(), nobody | {"Idempotency-Key": "k-1"}),
        ("/cart/items", {"product_id": "x", "quantity": -1}, nobody),
        ("/cart/items", {"product_id": cable, "quantity": 1}, nobody),
    ]
    for path, sent, headers in requests:
        r = await client.post(f"{API}{path}", json=sent, headers=headers)
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), path
    assert await cart_state(maker, customer) == before
    assert await count(maker, Order) == 0


async def test_an_unreadable_body_answers_400_as_on_every_other_route(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    customer, cable = catalog["user"]["customer"], catalog["product"]["cable"]
    await fill_cart(maker, customer, {cable: 1})
    before = await cart_state(maker, customer)
    unreadable = {
        "not UTF-8": b'{"product_id": 1, "quantity": 1, "x": "\xff\xfe"}',
        "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    }
    json_type = {"Content-Type": "application/json"}
    routes = [
        ("POST", "/checkout", key("k-unreadable")),
        ("POST", "/cart/items", auth("customer")),
        # Plain FastAPI routes, for comparison.
        ("PATCH", f"/cart/items/{cable}", auth("customer")),
        ("POST", "/auth/login", {}),
    ]
    for case, content in unreadable.items():
        for method, path, headers in routes:
            r = await client.request(
                method, f"{API}{path}", content=content, headers=headers | json_type
            )
            assert (r.status_code, r.json()) == (
                400,
                {"error": "bad_request", "detail": "There was an error parsing the body"},
            ), (case, path)
    assert await cart_state(maker, customer) == before
    assert (await count(maker, Order), charges(app)) == (0, 0)
    # The key was never used: it places the order.
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-unreadable"))
    assert r.status_code == 201
