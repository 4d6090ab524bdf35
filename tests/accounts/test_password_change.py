"""Changing a password ends the account's other sessions; "log out everywhere" ends all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.auth.service import hash_token
from emporium.config import Settings
from emporium.models import AuditLog, User
from tests.fixtures import valkey_unreachable

API = "/api/v1"
PASSWORD = "correct horse battery"
NEW = "staple battery horse"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"login_max_failures": 3, "login_window_seconds": 600})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: AsyncClient, email: str) -> int:
    r = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id: int = r.json()["id"]
    return user_id


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> str:
    r = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    # Each session is then presented by its bearer token alone.
    client.cookies.clear()
    token: str = r.json()["token"]
    return token


async def me(client: AsyncClient, token: str) -> int:
    return (await client.get(f"{API}/auth/me", headers=bearer(token))).status_code


async def change(client: AsyncClient, token: str, current: str, new: str = NEW) -> Any:
    body = {"current_password": current, "new_password": new}
    return await client.post(f"{API}/auth/password", json=body, headers=bearer(token))


async def give_api_token(maker: async_sessionmaker[AsyncSession], user_id: int, token: str) -> None:
    async with maker.begin() as s:
        await s.execute(
            update(User).where(User.id == user_id).values(api_token_hash=hash_token(token))
        )


async def password_hash(maker: async_sessionmaker[AsyncSession], user_id: int) -> str:
    async with maker() as s:
        value = await s.scalar(select(User.password_hash).where(User.id == user_id))
        assert value is not None
        return value


async def actions(maker: async_sessionmaker[AsyncSession], user_id: int) -> list[str]:
    async with maker() as s:
        q = select(AuditLog.action).where(AuditLog.entity_id == str(user_id)).order_by(AuditLog.id)
        return list(await s.scalars(q))


async def listed(app: FastAPI, user_id: int) -> set[bytes]:
    key = f"{app.state.cache.prefix}user_sessions:{user_id}"
    return set(await app.state.cache.client.smembers(key))


async def test_a_new_password_ends_the_other_sessions_and_keeps_this_one(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    ann = await register(client, "ann@example.com")
    bob = await register(client, "bob@example.com")
    laptop, phone, tablet = [await login(client, "ann@example.com") for _ in range(3)]
    bobs = await login(client, "bob@example.com")
    assert await listed(app, ann) == {hash_token(t).encode() for t in (laptop, phone, tablet)}

    r = await change(client, laptop, PASSWORD)
    assert (r.status_code, r.content) == (204, b"")
    assert [await me(client, t) for t in (laptop, phone, tablet, bobs)] == [200, 401, 401, 200]
    assert await listed(app, ann) == {hash_token(laptop).encode()}
    assert await listed(app, bob) == {hash_token(bobs).encode()}
    old = await client.post(
        f"{API}/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert (old.status_code, old.json()["error"]) == (401, "invalid_credentials")
    assert await me(client, await login(client, "ann@example.com", NEW)) == 200
    assert (await actions(maker, ann))[-2:] == ["user.password_changed", "user.logged_in"]


async def test_a_wrong_current_password_changes_nothing(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    ann = await register(client, "ann@example.com")
    this, other = await login(client, "ann@example.com"), await login(client, "ann@example.com")
    stored, trail = await password_hash(maker, ann), await actions(maker, ann)

    r = await change(client, this, "not my password")
    assert (r.status_code, r.json()["error"]) == (403, "incorrect_password")
    too_short = await change(client, this, PASSWORD, new="short")
    assert (too_short.status_code, too_short.json()["error"]) == (422, "invalid_input")
    anonymous = await client.post(
        f"{API}/auth/password", json={"current_password": PASSWORD, "new_password": NEW}
    )
    assert anonymous.status_code == 401

    assert await password_hash(maker, ann) == stored
    assert await actions(maker, ann) == trail
    assert [await me(client, t) for t in (this, other)] == [200, 200]
    assert await listed(app, ann) == {hash_token(t).encode() for t in (this, other)}


async def test_guessing_the_current_password_meets_the_login_limit(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    ann = await register(client, "ann@example.com")
    stolen = await login(client, "ann@example.com")
    stored = await password_hash(maker, ann)
    statuses = [(await change(client, stolen, f"guess {i}")).status_code for i in range(3)]
    assert statuses == [403, 403, 403]
    # Past the limit even the right password is refused, and nothing changes.
    r = await change(client, stolen, PASSWORD)
    assert (r.status_code, r.json()["error"]) == (429, "too_many_login_attempts")
    assert int(r.headers["retry-after"]) == r.json()["retry_after"]
    assert await password_hash(maker, ann) == stored


async def test_an_api_client_changing_the_password_ends_every_session_not_its_token(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    ann = await register(client, "ann@example.com")
    await give_api_token(maker, ann, "ann-api")
    browser = await login(client, "ann@example.com")
    r = await change(client, "ann-api", PASSWORD)
    assert r.status_code == 204
    assert [await me(client, t) for t in (browser, "ann-api")] == [401, 200]
    assert await listed(app, ann) == set()


async def test_without_valkey_the_change_is_refused_and_rolled_back(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    ann = await register(client, "ann@example.com")
    await give_api_token(maker, ann, "ann-api")
    browser = await login(client, "ann@example.com")
    stored, trail = await password_hash(maker, ann), await actions(maker, ann)
    async with valkey_unreachable(app):  # sessions cannot be ended
        r = await change(client, "ann-api", PASSWORD)
    assert (r.status_code, r.json()["error"]) == (503, "session_store_unavailable")
    assert await password_hash(maker, ann) == stored
    assert await actions(maker, ann) == trail
    assert await me(client, browser) == 200


async def test_logout_everywhere_ends_every_session_of_the_account_only(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    ann = await register(client, "ann@example.com")
    bob = await register(client, "bob@example.com")
    first, second = await login(client, "ann@example.com"), await login(client, "ann@example.com")
    bobs = await login(client, "bob@example.com")
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as browser:
        r = await browser.post(
            f"{API}/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
        )
        cookie_session = r.json()["token"]
        out = await browser.post(f"{API}/auth/logout-all")
        assert out.status_code == 204
        assert 'emporium_session=""' in out.headers["set-cookie"]
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert (await browser.get(f"{API}/auth/me")).status_code == 401
    assert [await me(client, t) for t in (first, second, cookie_session, bobs)] == [
        401,
        401,
        401,
        200,
    ]
    assert await listed(app, ann) == set()
    assert await listed(app, bob) == {hash_token(bobs).encode()}
    async with maker() as s:
        row = await s.scalar(
            select(AuditLog).where(AuditLog.action == "user.logged_out_everywhere")
        )
        assert row is not None
        assert (row.entity_id, row.actor_user_id, row.new_values) == (
            str(ann),
            ann,
            {"sessions_ended": 3},
        )
    assert (await client.post(f"{API}/auth/logout-all")).status_code == 401


async def test_logout_takes_the_session_off_the_accounts_list(
    app: FastAPI, client: AsyncClient
) -> None:
    ann = await register(client, "ann@example.com")
    one, two = await login(client, "ann@example.com"), await login(client, "ann@example.com")
    r = await client.post(f"{API}/auth/logout", headers=bearer(one))
    assert r.status_code == 204
    assert await listed(app, ann) == {hash_token(two).encode()}
    ttl = await app.state.cache.client.ttl(f"{app.state.cache.prefix}user_sessions:{ann}")
    assert 86390 <= ttl <= 86400


async def test_two_changes_at_once_with_the_same_password_one_wins(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await register(client, "ann@example.com")
    one, two = await login(client, "ann@example.com"), await login(client, "ann@example.com")
    first, second = await asyncio.gather(
        change(client, one, PASSWORD, new="first new password"),
        change(client, two, PASSWORD, new="second new password"),
    )
    assert sorted([first.status_code, second.status_code]) == [204, 403]
    winner = "first new password" if first.status_code == 204 else "second new password"
    r = await client.post(
        f"{API}/auth/login", json={"email": "ann@example.com", "password": winner}
    )
    assert r.status_code == 200
    # The loser's session was ended by the winner's change.
    loser = two if first.status_code == 204 else one
    assert await me(client, loser) == 401
