"""The per-process cache of callers' user rows: read once, kept for its lifetime, never
for unknown tokens; login sessions still end at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.auth.service import _BY_TOKENS, UserCache, _token_reads, hash_token
from emporium.kit import sql
from emporium.kit.metrics import DB_STATEMENTS
from emporium.models import User
from tests.fixtures import TOKENS, auth

ME = "/api/v1/auth/me"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: FastAPI) -> Clock:
    """The app's user cache (5 s) on a clock the test moves."""
    now = Clock()
    app.state.user_cache = UserCache(5, timer=now)
    return now


async def _me(client: AsyncClient, headers: dict[str, str]) -> tuple[int, Any, float]:
    """Status, body and the SQL statements the request ran."""
    before = DB_STATEMENTS._value.get()
    r = await client.get(ME, headers=headers)
    return r.status_code, r.json(), DB_STATEMENTS._value.get() - before


async def _set_token(
    maker: async_sessionmaker[AsyncSession], user_id: int, token: str | None
) -> None:
    async with maker() as s, s.begin():
        await s.execute(
            update(User)
            .where(User.id == user_id)
            .values(api_token_hash=hash_token(token) if token else None)
        )


async def test_a_token_user_is_read_once_then_served_from_the_cache(
    client: AsyncClient, catalog: dict[str, Any]
) -> None:
    first = await _me(client, auth("customer"))
    second = await _me(client, auth("customer"))
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert first[1]["id"] == catalog["user"]["customer"]
    assert (first[2], second[2]) == (1, 0)


async def test_with_the_cache_off_every_request_reads_the_user(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    app.state.user_cache = UserCache(0)
    counts = [(await _me(client, auth("customer")))[2] for _ in range(3)]
    assert counts == [1, 1, 1]


async def test_a_moved_token_keeps_its_user_until_the_cache_lapses(
    clock: Clock,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    customer, acme = catalog["user"]["customer"], catalog["user"]["acme"]
    assert (await _me(client, auth("customer")))[1]["id"] == customer
    # The customer's token is given to acme's user in the database.
    await _set_token(maker, customer, None)
    await _set_token(maker, acme, TOKENS["customer"])
    clock.now += 4.9
    status, body, spent = await _me(client, auth("customer"))
    assert (status, body["id"], spent) == (200, customer, 0)
    clock.now += 0.2
    status, body, spent = await _me(client, auth("customer"))
    assert (status, body["id"], body["role"], spent) == (200, acme, "seller", 1)


async def test_a_removed_token_stops_working_when_the_cache_lapses(
    clock: Clock,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    assert (await _me(client, auth("customer")))[0] == 200
    await _set_token(maker, catalog["user"]["customer"], None)
    clock.now += 5.1
    status, body, _ = await _me(client, auth("customer"))
    assert (status, body["error"]) == (401, "unauthorized")


async def test_an_unknown_token_is_not_cached_so_a_new_token_works_at_once(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    headers = {"Authorization": "Bearer brand-new-token"}
    status, body, _ = await _me(client, headers)
    assert (status, body["error"]) == (401, "unauthorized")
    await _set_token(maker, catalog["user"]["globex"], "brand-new-token")
    status, body, spent = await _me(client, headers)
    assert (status, body["id"], spent) == (200, catalog["user"]["globex"], 1)


async def test_a_session_user_is_read_once_and_logout_still_ends_the_session(
    client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    r = await client.post(
        "/api/v1/auth/register",
        json={"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"},
    )
    assert r.status_code == 201
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": "ann@example.com", "password": "correct horse battery"},
    )
    session = {"Authorization": f"Bearer {r.json()['token']}"}
    client.cookies.clear()  # the bearer alone, not the cookie login also set
    first = await _me(client, session)
    second = await _me(client, session)
    assert (first[0], second[0], first[1] == second[1]) == (200, 200, True)
    assert (first[2], second[2]) == (1, 0)
    r = await client.post("/api/v1/auth/logout", headers=session)
    assert r.status_code == 204
    status, body, _ = await _me(client, session)
    assert (status, body["error"]) == (401, "unauthorized")


async def test_callers_who_come_during_a_token_read_share_the_next_one(
    client: AsyncClient, catalog: dict[str, Any], clock: Clock
) -> None:
    # While one token read is on its way (the test holds that turn), four callers come
    # with tokens the cache does not hold: one statement reads all of theirs.
    who = ["customer", "acme", "admin"]
    calls = [*(auth(w) for w in who), {"Authorization": "Bearer no-such-token"}]
    seen: list[str] = []

    def record(query: str, _: tuple[Any, ...]) -> None:
        seen.append(query)

    sql.listen(record)
    try:
        async with _token_reads.enter(None):
            tasks = [asyncio.create_task(client.get(ME, headers=h)) for h in calls]
            for _ in range(500):
                if _token_reads.waiting(None) == len(calls):
                    break
                await asyncio.sleep(0.01)
            assert _token_reads.waiting(None) == len(calls)
        answers = await asyncio.gather(*tasks)
    finally:
        sql.unlisten(record)
    assert seen == [_BY_TOKENS]
    assert [r.status_code for r in answers] == [200, 200, 200, 401]
    assert [r.json()["email"] for r in answers[:3]] == [f"{w}@example.com" for w in who]
    assert answers[3].json()["error"] == "unauthorized"
    # The users found are cached as if each had been read alone; the unknown token is not.
    assert [(await _me(client, auth(w)))[2] for w in who] == [0, 0, 0]
    assert _token_reads.in_use() == 0
