"""Login attempts are limited per email and per client address, and registrations per
address, in Valkey."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.models import AuditLog, User
from tests.fixtures import valkey_unreachable

API = "/api/v1"
PASSWORD = "correct horse battery"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "login_max_failures": 3,
            "login_max_failures_per_account": 5,
            "login_max_attempts_per_ip": 6,
            "login_window_seconds": 600,
            "registration_max_per_ip": 2,
            "registration_window_seconds": 3600,
        }
    )


async def register(client: AsyncClient, email: str) -> None:
    r = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text


async def login(client: AsyncClient, email: str, password: str) -> Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def sessions(app: FastAPI) -> int:
    return len(await app.state.cache.client.keys(f"{app.state.cache.prefix}session:*"))


async def logins(maker: async_sessionmaker[AsyncSession]) -> int:
    async with maker() as s:
        q = select(func.count()).select_from(AuditLog).where(AuditLog.action == "user.logged_in")
        return int(await s.scalar(q) or 0)


def email_key(app: FastAPI, email: str) -> str:
    return f"{app.state.cache.prefix}login:email:{hashlib.sha256(email.encode()).hexdigest()}"


def pair_key(app: FastAPI, email: str, ip: str = "127.0.0.1") -> str:
    return f"{email_key(app, email)}:ip:{ip}"


def elsewhere(app: FastAPI, ip: str = "10.1.2.3") -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=(ip, 4000)), base_url="http://test")


def refused(action: str) -> float:
    labels = {"action": action}
    return REGISTRY.get_sample_value("emporium_auth_attempts_refused_total", labels) or 0.0


async def test_after_three_failures_from_an_address_it_is_refused_there_only(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await register(client, "ann@example.com")
    before = refused("login")
    for _ in range(3):
        r = await login(client, "ann@example.com", "wrong password")
        assert (r.status_code, r.json()["error"]) == (401, "invalid_credentials")
    r = await login(client, "ANN@example.com", PASSWORD)
    assert r.status_code == 429
    body = r.json()
    assert body["error"] == "too_many_login_attempts"
    assert 595 <= body["retry_after"] <= 600
    assert r.headers["retry-after"] == str(body["retry_after"])
    assert "set-cookie" not in r.headers
    assert refused("login") == before + 1
    assert await sessions(app) == 0
    assert await logins(maker) == 0
    # The account's owner, from another address, still logs in.
    async with elsewhere(app) as owner:
        assert (await login(owner, "ann@example.com", PASSWORD)).status_code == 200
    assert await logins(maker) == 1

    # The window passes (its key expires): the right password works, and clears the count.
    await app.state.cache.client.delete(pair_key(app, "ann@example.com"))
    assert (await login(client, "ann@example.com", PASSWORD)).status_code == 200
    assert await app.state.cache.client.exists(pair_key(app, "ann@example.com")) == 0
    assert (await login(client, "ann@example.com", "wrong again")).status_code == 401
    assert await sessions(app) == 2
    assert await logins(maker) == 2


async def test_guesses_from_many_addresses_meet_the_account_wide_limit(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await register(client, "al@example.com")
    for n in range(5):  # one failure each from five addresses: the account allows five
        async with elsewhere(app, f"10.0.0.{n}") as guesser:
            assert (await login(guesser, "al@example.com", "wrong password")).status_code == 401
    async with elsewhere(app, "10.0.0.9") as owner:
        r = await login(owner, "al@example.com", PASSWORD)
    assert (r.status_code, r.json()["error"]) == (429, "too_many_login_attempts")
    assert await logins(maker) == 0


async def test_guesses_refused_at_their_address_never_lock_the_owner_out(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await register(client, "cy@example.com")
    statuses = [
        (await login(client, "cy@example.com", f"guess {n}")).status_code for n in range(20)
    ]
    # Three failures, then refused at this address: only those three reach the account.
    assert statuses == [401] * 3 + [429] * 17
    assert await app.state.cache.client.get(email_key(app, "cy@example.com")) == b"3"
    async with elsewhere(app) as owner:
        r = await login(owner, "cy@example.com", PASSWORD)
    assert r.status_code == 200, r.text
    assert await logins(maker) == 1


async def test_a_refused_attempt_does_not_extend_the_window(
    app: FastAPI, client: AsyncClient
) -> None:
    await register(client, "bo@example.com")
    for _ in range(3):
        assert (await login(client, "bo@example.com", "wrong password")).status_code == 401
    key = pair_key(app, "bo@example.com")
    await app.state.cache.client.expire(key, 30)
    r = await login(client, "bo@example.com", PASSWORD)
    assert r.status_code == 429
    assert 28 <= r.json()["retry_after"] <= 30
    assert 28 <= await app.state.cache.client.ttl(key) <= 30


async def test_unknown_emails_count_per_address_and_parallel_guesses_cannot_slip_past(
    app: FastAPI, client: AsyncClient
) -> None:
    await register(client, "cy@example.com")
    await register(client, "di@example.com")
    # Eight guesses at once for other accounts, from one address allowed six attempts.
    answers = await asyncio.gather(
        *(login(client, f"guess{i}@example.com", "password1") for i in range(8))
    )
    assert sorted(r.status_code for r in answers) == [401] * 6 + [429] * 2
    # Every account is closed to that address now, the right password included...
    r = await login(client, "cy@example.com", PASSWORD)
    assert (r.status_code, r.json()["error"]) == (429, "too_many_login_attempts")
    # ...but not to another address.
    async with elsewhere(app) as other:
        assert (await login(other, "cy@example.com", PASSWORD)).status_code == 200


async def test_successful_logins_give_their_attempts_back(
    app: FastAPI, client: AsyncClient
) -> None:
    await register(client, "ed@example.com")
    for _ in range(10):
        r = await login(client, "ed@example.com", PASSWORD)
        assert r.status_code == 200
    ip_key = f"{app.state.cache.prefix}login:ip:127.0.0.1"
    counts = await app.state.cache.client.mget(
        ip_key, email_key(app, "ed@example.com"), pair_key(app, "ed@example.com")
    )
    assert counts == [b"0", b"0", None]


async def test_without_valkey_a_login_is_503_not_an_error_of_the_throttle(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    await register(client, "fi@example.com")
    async with valkey_unreachable(app):
        r = await login(client, "fi@example.com", PASSWORD)
    # The throttle lets the attempt through; the session store then refuses it.
    assert (r.status_code, r.json()["error"]) == (503, "session_store_unavailable")
    assert await sessions(app) == 0
    assert await logins(maker) == 0


async def users(maker: async_sessionmaker[AsyncSession]) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(User)) or 0)


async def test_an_address_registers_a_few_accounts_an_hour(
    app: FastAPI, client: AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    before, refusals = await users(maker), refused("register")
    # A body that fails validation never reaches the count.
    bad = await client.post(f"{API}/auth/register", json={"email": "x", "password": PASSWORD})
    assert bad.status_code == 422
    await register(client, "gu@example.com")
    await register(client, "ha@example.com")
    r = await client.post(
        f"{API}/auth/register", json={"email": "io@example.com", "password": PASSWORD}
    )
    assert r.status_code == 429
    assert r.json()["error"] == "too_many_registrations"
    assert 3595 <= r.json()["retry_after"] <= 3600
    assert r.headers["retry-after"] == str(r.json()["retry_after"])
    assert await users(maker) == before + 2
    assert refused("register") == refusals + 1
    async with elsewhere(app) as other:
        await register(other, "io@example.com")
    assert await users(maker) == before + 3
