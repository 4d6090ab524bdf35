"""Request bodies over EMPORIUM_MAX_BODY_BYTES answer 413 before they are read whole."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.models import CartItem, User
from tests.fixtures import auth

API = "/api/v1"
LIMIT = 4096


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_body_bytes": LIMIT})


def padded(size: int, product_id: int) -> bytes:
    """A valid add-to-cart body of exactly ``size`` bytes (JSON allows the spaces)."""
    raw = json.dumps({"product_id": product_id, "quantity": 1}).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


async def counts(maker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with maker() as s:
        lines = await s.scalar(select(func.count()).select_from(CartItem))
        users = await s.scalar(select(func.count()).select_from(User))
    return int(lines or 0), int(users or 0)


async def test_a_body_at_the_limit_is_served_and_one_byte_more_is_413(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    headers = {**auth("customer"), "Content-Type": "application/json"}
    cable = catalog["product"]["cable"]
    before = await counts(maker)
    r = await client.post(f"{API}/cart/items", content=padded(LIMIT + 1, cable), headers=headers)
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")
    assert await counts(maker) == before
    r = await client.post(f"{API}/cart/items", content=padded(LIMIT, cable), headers=headers)
    assert r.status_code == 200, r.text
    assert [line["quantity"] for line in r.json()["lines"]] == [1]


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    before = await counts(maker)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "big@example.com", "password": "correct horse battery", "name": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}'

    r = await client.post(
        f"{API}/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")
    assert await counts(maker) == before
