"""``emporium users create``, run as an operator runs it: a separate process."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.models import AuditLog, User
from tests.fixtures import command_env

API = "/api/v1"
PASSWORD = "operator-chosen-pw"


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_users(settings, "create", *args)


def run_users(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**command_env(settings), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "emporium", "users", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _users(maker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str, int | None]]:
    async with maker() as s:
        rows = await s.execute(select(User.email, User.role, User.seller_id).order_by(User.id))
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_create_admin_then_log_in_and_use_admin_rights(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    r = run_cli(settings, "Root@Example.com", "--password", PASSWORD, "--role", "admin")
    assert r.returncode == 0, r.stderr
    async with maker() as s:
        user = await s.scalar(select(User).where(User.email == "root@example.com"))
        assert user is not None
        assert r.stdout == f"{user.id}\n"
        assert (user.role, user.seller_id, user.api_token_hash) == ("admin", None, None)
        assert user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")
        audit = (await s.execute(select(AuditLog))).scalars().all()
    assert [(a.action, a.entity_id, a.actor_user_id, a.new_values) for a in audit] == [
        (
            "user.created",
            str(user.id),
            None,
            {"email": "root@example.com", "role": "admin", "seller_id": None},
        )
    ]

    r2 = await client.post(
        f"{API}/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    assert r2.status_code == 200, r2.text
    assert r2.json()["user"]["role"] == "admin"
    token = r2.json()["token"]
    client.cookies.clear()
    pid = catalog["product"]["sony"]  # owned by acme: only an admin may change it
    r3 = await client.patch(
        f"{API}/products/{pid}",
        json={"title": "Sony XM5"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r3.status_code == 200, r3.text
    assert r3.json()["title"] == "Sony XM5"


async def test_create_seller_needs_an_existing_seller(
    app: FastAPI,
    settings: Settings,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    before = await _users(maker)
    r = run_cli(settings, "shop@example.com", "--password", PASSWORD, "--role", "seller")
    assert (r.returncode, r.stdout) == (2, "")
    assert "Error: the seller role needs a seller id" in r.stderr
    r = run_cli(
        settings,
        "shop@example.com",
        "--password",
        PASSWORD,
        "--role",
        "seller",
        "--seller-id",
        "999",
    )
    assert (r.returncode, r.stdout) == (2, "")
    assert "Error: seller 999 does not exist" in r.stderr
    assert await _users(maker) == before

    acme = catalog["seller"]["acme"]
    r = run_cli(
        settings,
        "shop@example.com",
        "--password",
        PASSWORD,
        "--role",
        "seller",
        "--seller-id",
        str(acme),
    )
    assert r.returncode == 0, r.stderr
    assert await _users(maker) == [*before, ("shop@example.com", "seller", acme)]


async def test_create_rejections_exit_2_and_change_nothing(
    app: FastAPI, settings: Settings, maker: async_sessionmaker[AsyncSession]
) -> None:
    r = run_cli(settings, "first@example.com", "--password", PASSWORD, "--role", "customer")
    assert r.returncode == 0, r.stderr
    before = await _users(maker)
    assert before == [("first@example.com", "customer", None)]

    cases: list[tuple[tuple[str, ...], str]] = [
        (
            ("FIRST@example.com", "--password", PASSWORD, "--role", "admin"),
            "Error: an account with this email already exists",
        ),
        (("x@example.com", "--password", PASSWORD, "--role", "emperor"), "'emperor' is not one of"),
        (
            ("x@example.com", "--password", "short", "--role", "admin"),
            "Error: password: String should have at least 8 characters\n",
        ),
        (
            ("not-an-email", "--password", PASSWORD, "--role", "admin"),
            "Error: email: Value error, must be a valid email address",
        ),
        (
            ("x@example.com", "--password", PASSWORD, "--role", "admin", "--seller-id", "1"),
            "Error: only sellers belong to a seller",
        ),
        (
            ("x@example.com", "--password", PASSWORD, "--role", "admin", "--name", "\u200b "),
            "Error: name: String should have at least 1 character\n",
        ),
    ]
    for args, message in cases:
        r = run_cli(settings, *args)
        assert (r.returncode, r.stdout) == (2, ""), args
        assert message in r.stderr, (args, r.stderr)
    assert await _users(maker) == before
    async with maker() as s:
        assert await s.scalar(select(func.count()).select_from(AuditLog)) == 1


async def test_set_password_replaces_it_and_ends_the_accounts_sessions(
    app: FastAPI, client: AsyncClient, settings: Settings, maker: async_sessionmaker[AsyncSession]
) -> None:
    creds = {"email": "ann@example.com", "password": PASSWORD}
    assert (await client.post(f"{API}/auth/register", json=creds)).status_code == 201
    tokens = []
    for _ in range(2):
        r = await client.post(f"{API}/auth/login", json=creds)
        tokens.append(r.json()["token"])
    client.cookies.clear()

    r = run_users(settings, "set-password", "Ann@Example.com", "--password", "a new secret")
    assert (r.returncode, r.stdout, r.stderr) == (
        0,
        "Password set; 2 login session(s) ended.\n",
        "",
    )
    for token in tokens:
        me = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
    old = await client.post(f"{API}/auth/login", json=creds)
    assert (old.status_code, old.json()["error"]) == (401, "invalid_credentials")
    new = await client.post(f"{API}/auth/login", json={**creds, "password": "a new secret"})
    assert new.status_code == 200
    async with maker() as s:
        row = await s.scalar(select(AuditLog).where(AuditLog.action == "user.password_reset"))
        assert row is not None
        assert (row.entity_id, row.actor_user_id) == (str(new.json()["user"]["id"]), None)


async def test_set_password_refusals_exit_2_and_change_nothing(
    app: FastAPI, client: AsyncClient, settings: Settings, maker: async_sessionmaker[AsyncSession]
) -> None:
    creds = {"email": "ann@example.com", "password": PASSWORD}
    assert (await client.post(f"{API}/auth/register", json=creds)).status_code == 201
    async with maker() as s:
        before = await s.scalar(select(User.password_hash))
        audit_rows = await s.scalar(select(func.count()).select_from(AuditLog))
    cases = [
        (("nobody@example.com", "--password", "a new secret"), "Error: no account with this email"),
        (
            ("ann@example.com", "--password", "short"),
            "Error: password: String should have at least 8",
        ),
        (("not-an-email", "--password", "a new secret"), "Error: email: Value error, must be a"),
    ]
    for args, message in cases:
        r = run_users(settings, "set-password", *args)
        assert (r.returncode, r.stdout) == (2, ""), r.stderr
        assert message in r.stderr
    async with maker() as s:
        assert await s.scalar(select(User.password_hash)) == before
        assert await s.scalar(select(func.count()).select_from(AuditLog)) == audit_rows
    assert (await client.post(f"{API}/auth/login", json=creds)).status_code == 200
