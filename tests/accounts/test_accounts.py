from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from emporium.audit import service as audit
from emporium.auth.service import hash_token
from emporium.catalog.loader import ensure_user
from emporium.kit.errors import Conflict
from emporium.models import AuditLog, Product, Role, User
from tests.fixtures import auth

API = "/api/v1"
PASSWORD = "correct horse battery"


async def _count(maker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def _register(client: AsyncClient, email: str = "Ann@Example.COM") -> dict[str, Any]:
    r = await client.post(
        f"{API}/auth/register", json={"email": email, "password": PASSWORD, "name": " Ann "}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _login(client: AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _session_key(app: FastAPI, token: str) -> str:
    return f"{app.state.cache.prefix}session:{hash_token(token)}"


async def test_register_creates_customer_with_argon2_hash(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    user = await _register(client)
    assert user == {
        "id": user["id"],
        "email": "ann@example.com",
        "name": "Ann",
        "role": "customer",
        "seller_id": None,
    }
    async with maker() as s:
        row = await s.get(User, user["id"])
        assert row is not None
        assert row.email == "ann@example.com"
        assert row.role == "customer"
        assert row.password_hash is not None
        assert row.password_hash.startswith("$argon2id$")
        assert PASSWORD not in row.password_hash
        audit = (await s.execute(select(AuditLog))).scalars().all()
    assert [
        (a.action, a.entity_type, a.entity_id, a.actor_user_id, a.new_values) for a in audit
    ] == [
        (
            "user.registered",
            "user",
            str(user["id"]),
            user["id"],
            {"email": "ann@example.com", "role": "customer"},
        )
    ]


async def test_register_duplicate_email_is_case_insensitive(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await _register(client, "ann@example.com")
    r = await client.post(
        f"{API}/auth/register", json={"email": " ANN@example.com ", "password": "another-password"}
    )
    assert r.status_code == 409
    assert r.json() == {
        "error": "email_taken",
        "detail": "an account with this email already exists",
    }
    assert await _count(maker, User) == 1
    assert await _count(maker, AuditLog) == 1


async def test_only_an_ip_address_is_recorded_as_the_clients(
    app: FastAPI, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    # As served by uvicorn, which trusts X-Forwarded-For from 127.0.0.1 by default.
    proxied = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")
    transport = ASGITransport(app=proxied, client=("127.0.0.1", 40000))
    forwarded = [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8::1", "2001:db8::1"),
        ("x" * 65, None),
        ("fe80::1%" + "e" * 40, None),  # an IPv6 zone id makes it too long to be one
        ("not-an-address", None),
    ]
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        for i, (sent, _) in enumerate(forwarded):
            r = await client.post(
                f"{API}/auth/register",
                json={"email": f"u{i}@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": sent},
            )
            assert r.status_code == 201, (sent, r.text)
        r = await client.post(
            f"{API}/cart/items",
            json={"product_id": catalog["product"]["cable"], "quantity": 1},
            headers={**auth("customer"), "X-Forwarded-For": "x" * 65},
        )
        assert r.status_code == 200, r.text
    async with maker() as s:
        rows = (await s.execute(select(AuditLog.action, AuditLog.ip).order_by(AuditLog.id))).all()
    assert [tuple(row) for row in rows] == [
        *(("user.registered", ip) for _, ip in forwarded),
        ("inventory.reserved", None),
    ]


async def test_register_rejects_bad_input_and_changes_nothing(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "a@example.com", "password": "short77"}, "password"),
        ({"email": "a@example.com", "password": "x" * 257}, "password"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "nul\x00password"}, "password"),
        ({"email": "a@example.com"}, "password"),
        # A name is optional, but one given must show something.
        ({"email": "a@example.com", "password": PASSWORD, "name": "\u200b"}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": " \ufeff "}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": ""}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "x" * 201}, "name"),
    ]
    for body, field in cases:
        r = await client.post(f"{API}/auth/register", json=body)
        assert r.status_code == 422, body
        assert r.json()["error"] == "invalid_input"
        assert [d["field"] for d in r.json()["detail"]] == [field]
    r = await client.post(f"{API}/auth/register", json=cases[0][0])
    assert r.json()["detail"][0]["message"] == "String should have at least 8 characters"
    r = await client.post(f"{API}/auth/register", json=cases[5][0])
    assert r.json()["detail"] == [
        {
            "field": "name",
            "message": "String should have at least 1 character",
            "type": "too_short",
        }
    ]
    r = await client.post(
        f"{API}/auth/register",
        content=b'{"email": "a@example.com",',
        headers={"content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]) == (422, "malformed_json")
    assert await _count(maker, User) == 0
    assert await _count(maker, AuditLog) == 0


async def test_login_sets_cookie_and_token_and_me_works_both_ways(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    user = await _register(client)
    r = await client.post(
        f"{API}/auth/login", json={"email": "ANN@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    token = body["token"]
    assert body == {"token": token, "token_type": "bearer", "expires_in": 86400, "user": user}
    # A login session: "ses_" and 32 random bytes, URL-safe base64 (43 characters).
    assert (token[:4], len(token)) == ("ses_", 47)
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"emporium_session={token};")
    attributes = [a.strip().lower() for a in set_cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "max-age=86400" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes

    # Only the token's hash is stored, mapped to the user id, with a 24 h TTL.
    raw = app.state.cache.client
    assert await raw.get(_session_key(app, token)) == str(user["id"]).encode()
    assert await raw.keys(f"*{token}*") == []
    ttl = await raw.ttl(_session_key(app, token))
    assert 86000 < ttl <= 86400

    # The client kept the cookie: me works with it alone.
    assert client.cookies.get("emporium_session") == token
    r = await client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()) == (200, user)

    client.cookies.clear()
    r = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()) == (200, user)
    client.cookies.set("emporium_session", token)
    r = await client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()) == (200, user)

    client.cookies.clear()
    r = await client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")

    async with maker() as s:
        audit = (await s.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert [(a.action, a.entity_type, a.entity_id, a.actor_user_id) for a in audit] == [
        ("user.registered", "user", str(user["id"]), user["id"]),
        ("user.logged_in", "user", str(user["id"]), user["id"]),
    ]


async def test_secure_cookie_when_configured(app: FastAPI, client: AsyncClient) -> None:
    app.state.settings.cookie_secure = True
    await _register(client)
    r = await client.post(
        f"{API}/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200
    attributes = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
    assert "secure" in attributes


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    await _register(client)
    # The seeded users have API tokens but no password.
    attempts = [
        {"email": "ann@example.com", "password": "wrong password"},
        {"email": "nobody@example.com", "password": PASSWORD},
        {"email": "admin@example.com", "password": PASSWORD},
    ]
    for attempt in attempts:
        r = await client.post(f"{API}/auth/login", json=attempt)
        assert r.status_code == 401, attempt
        assert r.json() == {
            "error": "invalid_credentials",
            "detail": "email or password is incorrect",
        }
        assert "set-cookie" not in r.headers
    assert await app.state.cache.client.keys(f"{app.state.cache.prefix}session:*") == []
    async with maker() as s:
        actions = (await s.execute(select(AuditLog.action))).scalars().all()
    assert list(actions) == ["user.registered"]


async def test_logout_ends_the_session(app: FastAPI, client: AsyncClient) -> None:
    await _register(client)
    token = (await _login(client, "ann@example.com"))["token"]
    key = _session_key(app, token)
    assert await app.state.cache.client.exists(key) == 1

    r = await client.post(f"{API}/auth/logout")
    assert r.status_code == 204
    set_cookie = r.headers["set-cookie"].lower()
    assert set_cookie.startswith('emporium_session="";')
    assert "max-age=0" in set_cookie
    assert client.cookies.get("emporium_session") is None
    assert await app.state.cache.client.exists(key) == 0

    r = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    client.cookies.set("emporium_session", token)
    r = await client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    client.cookies.clear()
    # Logging out again is harmless.
    r = await client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204


async def test_logout_with_bearer_token(app: FastAPI, client: AsyncClient) -> None:
    await _register(client)
    token = (await _login(client, "ann@example.com"))["token"]
    client.cookies.clear()
    r = await client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    assert await app.state.cache.client.exists(_session_key(app, token)) == 0
    r = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_customer_session_cannot_write_catalog_but_seller_api_token_can(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    await _register(client)
    token = (await _login(client, "ann@example.com"))["token"]
    client.cookies.clear()
    product = {"title": "X", "category_id": catalog["category"]["kitchen"], "price": "1.00"}
    r = await client.post(
        f"{API}/products", json=product, headers={"Authorization": f"Bearer {token}"}
    )
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    client.cookies.set("emporium_session", token)
    r = await client.post(f"{API}/products", json=product)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    client.cookies.clear()
    assert await _count(maker, Product) == 9

    r = await client.post(f"{API}/products", json=product, headers=auth("acme"))
    assert r.status_code == 201, r.text
    assert r.json()["seller"]["id"] == catalog["seller"]["acme"]
    assert await _count(maker, Product) == 10
    r = await client.get(f"{API}/auth/me", headers=auth("admin"))
    assert r.json() == {
        "id": catalog["user"]["admin"],
        "email": "admin@example.com",
        "name": "admin",
        "role": "admin",
        "seller_id": None,
    }


async def test_api_token_is_not_accepted_as_cookie(
    client: AsyncClient, catalog: dict[str, Any]
) -> None:
    client.cookies.set("emporium_session", "test-seller-acme")
    r = await client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    client.cookies.clear()
    r = await client.get(f"{API}/auth/me", headers={"Authorization": "Bearer nope"})
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")


async def test_on_login_hooks_run_with_the_user(app: FastAPI, client: AsyncClient) -> None:
    user = await _register(client)
    seen: list[tuple[int, str, bool]] = []

    async def hook(session: AsyncSession, request: Request, who: User) -> None:
        seen.append((who.id, request.url.path, session.in_transaction()))

    async def second(session: AsyncSession, request: Request, who: User) -> None:
        seen.append((who.id, "second", True))

    app.state.on_login = [hook, second]
    r = await client.post(
        f"{API}/auth/login", json={"email": "ann@example.com", "password": "wrong-password"}
    )
    assert r.status_code == 401
    assert seen == []
    await _login(client, "ann@example.com")
    assert seen == [(user["id"], f"{API}/auth/login", True), (user["id"], "second", True)]


async def test_failing_hook_fails_the_login_without_a_session(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await _register(client)

    async def broken(session: AsyncSession, request: Request, who: User) -> None:
        audit.record(
            session,
            actor=who,
            action="hook.ran",
            entity_type="user",
            entity_id=who.id,
            old=None,
            new=None,
        )
        raise Conflict("hook refused")

    app.state.on_login = [broken]
    r = await client.post(
        f"{API}/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert (r.status_code, r.json()) == (409, {"error": "conflict", "detail": "hook refused"})
    assert "set-cookie" not in r.headers
    assert await app.state.cache.client.keys(f"{app.state.cache.prefix}session:*") == []
    async with maker() as s:
        actions = (await s.execute(select(AuditLog.action))).scalars().all()
    assert list(actions) == ["user.registered"]


async def test_outdated_hash_is_upgraded_on_login(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    from argon2 import PasswordHasher

    user = await _register(client)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with maker() as s, s.begin():
        row = await s.get(User, user["id"])
        assert row is not None
        row.password_hash = weak
    await _login(client, "ann@example.com")
    async with maker() as s:
        row = await s.get(User, user["id"])
        assert row is not None
        assert row.password_hash != weak
        assert row.password_hash is not None
        assert row.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    await _login(client, "ann@example.com")


async def test_deleted_session_user_is_unauthorized(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await _register(client)
    token = (await _login(client, "ann@example.com"))["token"]
    # A session pointing at a user id that does not exist (e.g. a removed account).
    await app.state.cache.client.set(_session_key(app, token), "424242", ex=60)
    r = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")


async def test_api_tokens_and_login_sessions_do_not_overlap(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    """A "ses_" bearer is only ever a login session; an API token may not take that prefix."""
    users_before = await _users(maker)
    with pytest.raises(ValueError, match="must not start with 'ses_'"):
        async with maker() as s:
            await ensure_user(
                s,
                email="x@example.com",
                name="x",
                role=Role.customer,
                token="ses_x",
                seller_id=None,
            )
    assert await _users(maker) == users_before
    async with maker() as s, s.begin():
        user = await s.scalar(select(User).where(User.id == catalog["user"]["customer"]))
        assert user is not None
        user.api_token_hash = hash_token("ses_looks-like-a-session")
    r = await client.get(
        "/api/v1/auth/me", headers={"Authorization": "Bearer ses_looks-like-a-session"}
    )
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")


async def _users(maker: async_sessionmaker[AsyncSession]) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(User)) or 0)
