"""The command line, run as a user runs it: a separate process against the test database."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.models import Category, Product, Stock, User, Warehouse
from emporium.search.engine import SearchIndex


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EMPORIUM_DATABASE_URL": str(settings.database_url),
        "EMPORIUM_VALKEY_URL": str(settings.valkey_url),
        "EMPORIUM_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "emporium", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def _count(maker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_seed_reindex_and_search(
    app: FastAPI, settings: Settings, maker: async_sessionmaker[AsyncSession]
) -> None:
    r = run_cli(settings, "seed", "--products", "300")
    assert r.returncode == 0, r.stderr
    assert "Seeded 300 products" in r.stdout
    assert await _count(maker, Product) == 300
    assert await _count(maker, Warehouse) == 3
    assert await _count(maker, User) == 2
    async with maker() as s:
        stock_rows = await s.scalar(select(func.count()).select_from(Stock))
    assert stock_rows == 900
    assert SearchIndex(settings.index_dir).doc_count() == 300

    r = run_cli(settings, "seed", "--products", "300", "--if-empty")
    assert r.returncode == 0
    assert "nothing seeded" in r.stdout
    assert await _count(maker, Product) == 300

    r = run_cli(settings, "reindex")
    assert r.returncode == 0, r.stderr
    assert "is live with 300 products" in r.stdout

    r = run_cli(settings, "search", "")
    assert r.returncode == 0, r.stderr
    assert "300 results for ''" in r.stdout
    assert "Price:" in r.stdout


async def test_import_bestbuy_file(
    app: FastAPI, settings: Settings, maker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    records = [
        {
            "objectID": "1",
            "name": "Moto G Play",
            "description": "A phone.",
            "brand": "Motorola",
            "categories": ["Cell Phones", "Unlocked"],
            "hierarchicalCategories": {"lvl0": "Cell Phones", "lvl1": "Cell Phones > Unlocked"},
            "price": 149.99,
            "rating": 4,
            "popularity": 10,
            "image": "https://img/1.jpg",
            "type": "Phone",
        },
        {
            "objectID": "2",
            "name": "Phone Case",
            "description": "A case.",
            "brand": "Otter",
            "categories": ["Cell Phones", "Cases"],
            "hierarchicalCategories": {"lvl0": "Cell Phones", "lvl1": "Cell Phones > Cases"},
            "price": 19.5,
            "rating": 5,
            "popularity": 3,
            "image": "https://img/2.jpg",
            "type": "Case",
        },
    ]
    path = tmp_path / "bb.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(records, f)
    r = run_cli(settings, "import-catalog", str(path), "--format", "bestbuy")
    assert r.returncode == 0, r.stderr
    assert await _count(maker, Product) == 2
    async with maker() as s:
        names = sorted((await s.execute(select(Category.name))).scalars())
    assert "Cell Phones" in names
    # Importing the same file again updates in place.
    r = run_cli(settings, "import-catalog", str(path), "--format", "bestbuy")
    assert r.returncode == 0, r.stderr
    assert await _count(maker, Product) == 2
    assert SearchIndex(settings.index_dir).doc_count() == 2

    r = run_cli(settings, "import-catalog", str(path), "--format", "amazon")
    assert r.returncode == 2
    assert await _count(maker, Product) == 2


@pytest.mark.parametrize(
    ("workers", "pool", "checkout"), [(2, "8", "12"), (3, "8", "11"), (4, "7", "5"), (8, "3", "2")]
)
def test_server_processes_share_the_connection_budget(
    monkeypatch: pytest.MonkeyPatch, workers: int, pool: str, checkout: str
) -> None:
    from emporium.cli import CONNECTION_BUDGET, share_connections
    from emporium.kit.db import orm_overflow

    for name in ("EMPORIUM_DB_POOL_SIZE", "EMPORIUM_DB_CHECKOUT_POOL_SIZE"):
        monkeypatch.setenv(name, "")  # recorded, so that what the call sets is undone
        monkeypatch.delenv(name)
    share_connections(Settings(), workers)
    got = (os.environ["EMPORIUM_DB_POOL_SIZE"], os.environ["EMPORIUM_DB_CHECKOUT_POOL_SIZE"])
    assert got == (pool, checkout)
    # ORM pool and its overflow, plain pool, checkout pool, outbox listener.
    size = int(pool)
    assert workers * (2 * size + orm_overflow(size) + int(checkout) + 1) <= CONNECTION_BUDGET


def test_pools_sized_by_the_operator_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from emporium.cli import share_connections

    monkeypatch.setenv("EMPORIUM_DB_POOL_SIZE", "30")
    monkeypatch.setenv("EMPORIUM_DB_CHECKOUT_POOL_SIZE", "")
    monkeypatch.delenv("EMPORIUM_DB_CHECKOUT_POOL_SIZE")
    share_connections(Settings(), 4)
    assert os.environ["EMPORIUM_DB_POOL_SIZE"] == "30"
    assert "EMPORIUM_DB_CHECKOUT_POOL_SIZE" not in os.environ
