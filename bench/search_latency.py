"""Search latency through the full HTTP stack (in-process ASGI), Tantivy and the fallback.

    .venv/bin/python bench/search_latency.py [--products 20000] [--queries 500]

Uses its own data directory (var/bench) and embedded servers unless EMPORIUM_DATABASE_URL /
EMPORIUM_VALKEY_URL are set. Prints p50/p95/p99 per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from httpx import ASGITransport, AsyncClient

BENCH_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"
QUERIES = [
    "headphones",
    "wireless headphones",
    "coffee maker",
    "running shoes",
    '"noise cancelling"',
    "samsung",
    "laptop",
    "stand mixer",
    "lego",
    "yoga mat",
    "phone case",
    "bluetooth speaker",
    "samsnug",
    "hedphones",
    "",
    "kitchen",
    "smart watch",
    "blender",
    "tent",
    "novel",
]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": ordered[-1]}


async def main(products: int, queries: int) -> None:
    os.environ.setdefault("EMPORIUM_DATA_DIR", str(BENCH_DIR))
    from emporium.catalog.loader import ensure_warehouses, load_records
    from emporium.catalog.sources import DEMO_WAREHOUSES, generate_demo
    from emporium.config import Settings
    from emporium.kit.db import open_database, resolve_database_url
    from emporium.kit.migrate import upgrade
    from emporium.main import create_app
    from emporium.search.documents import count_active
    from emporium.search.engine import SearchIndex
    from emporium.search.indexer import rebuild

    # Hold the breaker open for the whole fallback phase once it is forced open.
    settings = Settings(log_level="WARNING", search_breaker_reset_seconds=3600)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine, maker = await open_database(settings)
    await asyncio.to_thread(upgrade, resolve_database_url(settings))
    async with maker() as session:
        have = await count_active(session)
    if have < products:
        async with maker() as session, session.begin():
            await ensure_warehouses(session, DEMO_WAREHOUSES)
        t0 = time.perf_counter()
        await load_records(maker, generate_demo(products, seed=7))
        print(f"seeded {products} products in {time.perf_counter() - t0:.1f}s")
    index = SearchIndex(settings.index_dir)
    t0 = time.perf_counter()
    _, n = await rebuild(maker, index)
    index.close()
    print(f"indexed {n} products in {time.perf_counter() - t0:.2f}s")
    await engine.dispose()

    app = create_app(settings, background=False)
    rng = random.Random(1)
    brands = ["Samsung", "Sony", "Apple", "Anker", "Nike"]
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://bench") as client,
    ):
        plans: list[dict[str, Any]] = []
        for _ in range(queries):
            params: dict[str, Any] = {"q": rng.choice(QUERIES), "page_size": 20}
            if rng.random() < 0.3:
                params["brand"] = rng.choice(brands)
            if rng.random() < 0.3:
                params["price_min"], params["price_max"] = "25", "100"
            if rng.random() < 0.2:
                params["in_stock"] = "true"
            if rng.random() < 0.2:
                params["sort"] = rng.choice(["price_asc", "rating", "newest"])
            plans.append(params)
        for backend in ("tantivy", "postgres"):
            if backend == "postgres":
                app.state.search.breaker.open()
            for params in plans[:20]:  # warm up
                await client.get("/api/v1/search", params=params)
            samples = []
            for params in plans:
                t = time.perf_counter()
                r = await client.get("/api/v1/search", params=params)
                samples.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200 or r.json()["backend"] != backend:
                    raise SystemExit(f"unexpected answer: {r.status_code} {r.text[:200]}")
            stats = percentiles(samples)
            print(
                f"{backend:9s} {queries} searches over {n} products: "
                + "  ".join(f"{k}={v:.1f}ms" for k, v in stats.items())
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.products, args.queries))
