"""Sessions from before the per-user lists are listed once, so a password change ends them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from fastapi import FastAPI
from httpx import AsyncClient

from emporium.accounts.sessions import SessionStore
from emporium.accounts.tasks import SessionLister
from emporium.auth.service import hash_token, new_token
from emporium.config import Settings
from emporium.kit.cache import Cache
from tests.accounts.test_password_change import PASSWORD, change, listed, login, me, register
from tests.fixtures import command_env

HOUR_MS = 3_600_000


def store(app: FastAPI) -> SessionStore:
    return SessionStore(app.state.cache, app.state.settings.session_ttl_seconds)


async def unlisted_session(app: FastAPI, user_id: int, seconds: int = 3600) -> str:
    """A session as it was stored before the lists: its key only."""
    token = "ses_" + new_token()
    await app.state.cache.client.set(store(app).key(token), str(user_id), ex=seconds)
    return token


async def list_ttl(app: FastAPI, user_id: int) -> int:
    ttl: int = await app.state.cache.client.pttl(f"{app.state.cache.prefix}user_sessions:{user_id}")
    return ttl


async def test_old_sessions_are_listed_and_a_password_change_ends_them(
    app: FastAPI, client: AsyncClient
) -> None:
    ann = await register(client, "ann@example.com")
    bob = await register(client, "bob@example.com")
    current = await login(client, "ann@example.com")
    ann_old = [await unlisted_session(app, ann) for _ in range(2)]
    bob_old = await unlisted_session(app, bob, seconds=3600)
    assert await listed(app, ann) == {hash_token(current).encode()}
    assert await listed(app, bob) == set()

    lister = SessionLister(store(app))
    assert await lister.run_once() == 3
    assert lister.finished is True

    assert await listed(app, ann) == {hash_token(t).encode() for t in [current, *ann_old]}
    assert await listed(app, bob) == {hash_token(bob_old).encode()}
    # A list lives as long as its longest session: Ann's keeps the 24 h of her login,
    # Bob's new one takes his session's hour.
    assert await list_ttl(app, ann) > 23 * HOUR_MS
    assert HOUR_MS - 60_000 < await list_ttl(app, bob) <= HOUR_MS

    r = await change(client, current, PASSWORD)
    assert r.status_code == 204, r.text
    assert [await me(client, t) for t in ann_old] == [401, 401]
    assert await me(client, current) == 200
    assert await me(client, bob_old) == 200


async def test_the_listing_runs_once(app: FastAPI, client: AsyncClient) -> None:
    ann = await register(client, "ann@example.com")
    await unlisted_session(app, ann)
    assert await store(app).list_unlisted() == 1
    later = await unlisted_session(app, ann)

    assert await store(app).list_unlisted() is None
    assert hash_token(later).encode() not in await listed(app, ann)
    assert len(await listed(app, ann)) == 1


async def test_many_sessions_are_listed_in_batches(app: FastAPI, client: AsyncClient) -> None:
    users = [await register(client, f"user{n}@example.com") for n in range(3)]
    digests: dict[int, set[bytes]] = {u: set() for u in users}
    async with app.state.cache.client.pipeline(transaction=False) as pipe:
        for n in range(1203):
            token, user = "ses_" + new_token(), users[n % 3]
            pipe.set(store(app).key(token), str(user), ex=3600)
            digests[user].add(hash_token(token).encode())
        await pipe.execute()

    assert await store(app).list_unlisted() == 1203
    assert {u: await listed(app, u) for u in users} == digests


async def test_an_unreachable_valkey_is_retried_and_marks_nothing(app: FastAPI) -> None:
    down = Cache("redis://127.0.0.1:9/0")
    lister = SessionLister(SessionStore(down, 3600), interval_seconds=0.01)
    lister.start()
    try:
        for _ in range(500):
            if lister.last_error is not None:
                break
            await asyncio.sleep(0.01)
        assert lister.last_error is not None
        assert lister.finished is False
        assert lister.running is True
    finally:
        await lister.stop()
        await down.close()
    assert await app.state.cache.client.exists(f"{app.state.cache.prefix}sessions_listed") == 0


async def test_the_job_stops_once_it_has_listed(app: FastAPI) -> None:
    lister = SessionLister(store(app), interval_seconds=0.01)
    lister.start()
    for _ in range(500):
        if not lister.running:
            break
        await asyncio.sleep(0.01)
    assert lister.running is False
    assert lister.finished is True
    assert lister.last_error is None
    await lister.stop()
    assert await app.state.cache.client.get(f"{app.state.cache.prefix}sessions_listed") == b"1"


async def test_the_worker_command_lists_old_sessions(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    ann = await register(client, "ann@example.com")
    old = await unlisted_session(app, ann)
    worker = subprocess.Popen(
        [sys.executable, "-m", "emporium", "worker", "--interval", "0.5"],
        env=command_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marker = f"{app.state.cache.prefix}sessions_listed"
    try:
        for _ in range(600):
            if await app.state.cache.client.exists(marker) or worker.poll() is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGINT)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "Worker running" in output
    assert await listed(app, ann) == {hash_token(old).encode()}
