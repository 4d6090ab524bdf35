"""Checkout throughput over HTTP against a running Emporium server.

    .venv/bin/python bench/checkout.py --mode spread   # 64 clients over 10k products
    .venv/bin/python bench/checkout.py --mode flash    # 1,000 buyers, 1 product, 100 units

Start the server first (`make run`, or `emporium serve`). The benchmark prepares users and
stock directly in the server's database (EMPORIUM_DATABASE_URL, or the embedded one under
EMPORIUM_DATA_DIR), then drives the public API: add to cart, then checkout. It prints
orders/s, latency percentiles, SQL statements per checkout (from the server's
emporium_db_statements_total) and oversold units, which must be 0.

bench/vs_pgbench.py starts and stops the server itself to put the spread rate beside
pgbench's replay of the same SQL, back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from cpu_share import machine_speed, report, snapshot
from http_client import Client

CARD = {"card_number": "4242424242424242", "exp": "12/30", "cvc": "123"}
ADDRESS = {
    "name": "Bench Buyer",
    "line1": "1 Load St",
    "city": "Testville",
    "postal_code": "12345",
    "country": "US",
}


def dsn() -> str:
    url = os.environ.get("EMPORIUM_DATABASE_URL")
    if url:
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
    import warnings
    from pathlib import Path

    warnings.simplefilter("ignore")
    from emporium.kit.embedded import start_embedded_postgres

    data = Path(os.environ.get("EMPORIUM_DATA_DIR", "var")).resolve()
    uri: str = start_embedded_postgres(data / "pg").get_uri("emporium")
    return uri


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    cart_latencies: list[float] = field(default_factory=list)
    # Of those, the buyers' who got a cart line and the buyers' turned away (409).
    granted_latencies: list[float] = field(default_factory=list)
    refused_latencies: list[float] = field(default_factory=list)
    orders: int = 0
    rejected: int = 0
    last_order_at: float = 0.0
    errors: dict[int, int] = field(default_factory=dict)


def pct(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return f"p50={q[49]:.1f}ms p99={q[98]:.1f}ms"


async def statements(client: Client) -> float:
    text = await client.get_text("/metrics")
    m = re.search(r"^emporium_db_statements_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def make_users(conn: asyncpg.Connection, n: int, tag: str) -> list[str]:
    tokens = [f"bench-{tag}-{i}-{uuid.uuid4().hex}" for i in range(n)]
    await conn.executemany(
        "INSERT INTO users (email, name, role, api_token_hash) VALUES ($1, $2, 'customer', $3)",
        [
            (
                f"{tag}-{i}-{uuid.uuid4().hex[:8]}@bench.local",
                "bench",
                hashlib.sha256(t.encode()).hexdigest(),
            )
            for i, t in enumerate(tokens)
        ],
    )
    return tokens


async def buy(client: Client, token: str, product_id: int, stats: Stats) -> bool:
    headers = {"Authorization": f"Bearer {token}"}
    t = time.perf_counter()
    status = await client.post(
        "/api/v1/cart/items", {"product_id": product_id, "quantity": 1}, headers
    )
    latency = (time.perf_counter() - t) * 1000
    stats.cart_latencies.append(latency)
    if status == 409:
        stats.rejected += 1
        stats.refused_latencies.append(latency)
        return False
    if status >= 300:
        stats.errors[status] = stats.errors.get(status, 0) + 1
        return False
    stats.granted_latencies.append(latency)
    t = time.perf_counter()
    status = await client.post(
        "/api/v1/checkout",
        {"shipping_address": ADDRESS, "payment": CARD},
        {**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    stats.latencies.append((time.perf_counter() - t) * 1000)
    if status == 201:
        stats.orders += 1
        stats.last_order_at = time.perf_counter()
        return True
    stats.errors[status] = stats.errors.get(status, 0) + 1
    return False


def session(url: str, connections: int, timeout: float) -> Client:
    return Client(url, connections, timeout)


def pgbench_rate(seconds: float) -> float:
    """Checkouts/s of the same SQL replayed by pgbench (bench/pgbench_checkout.py --run)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgbench_checkout.py")
    cmd = [sys.executable, script, "--run", "--clients", "16", "--seconds", str(round(seconds))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"^pgbench: ([\d.]+) TPS", out, re.M)
    if m is None:
        raise SystemExit(f"pgbench printed no rate:\n{out}")
    return float(m.group(1))


async def stock_up(conn: asyncpg.Connection, products: int) -> list[int]:
    """The first ``products`` active products, each with at least half a million free units.

    Rows that have enough are left alone: rewriting all of them before every run left as
    many dead rows, and autovacuum cleaned them up during the measured run."""
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM products WHERE is_active ORDER BY id LIMIT $1", products
        )
    ]
    if len(ids) < products:
        raise SystemExit(f"need {products} products, found {len(ids)}: seed more first")
    wh = await conn.fetchval("SELECT min(id) FROM warehouses")
    await conn.execute(
        "INSERT INTO stock (product_id, warehouse_id, quantity) SELECT unnest($1::bigint[]), $2, 1000000 "
        "ON CONFLICT (product_id, warehouse_id) DO UPDATE SET quantity = stock.reserved + 1000000 "
        "WHERE stock.quantity - stock.reserved < 500000",
        ids,
        wh,
    )
    return ids


async def spread(
    url: str,
    conn: asyncpg.Connection,
    clients: int,
    products: int,
    seconds: float,
    *,
    quiet: bool = False,
) -> float:
    ids = await stock_up(conn, products)
    tokens = await make_users(conn, clients, "spread")
    stats = Stats()
    async with session(url, clients, 60) as client:
        before = await statements(client)
        cpu_before = snapshot()
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def worker(token: str) -> None:
            rng = random.Random(token)
            while time.perf_counter() < deadline:
                await buy(client, token, rng.choice(ids), stats)

        await asyncio.gather(*(worker(t) for t in tokens))
        elapsed = time.perf_counter() - start
        cpu_after = snapshot()
        spent = await statements(client) - before
    if quiet:
        return stats.orders / elapsed
    print(f"spread: {clients} clients, {products} products, {elapsed:.1f}s")
    print(
        f"  orders: {stats.orders} ({stats.orders / elapsed:.1f} orders/s), errors: {stats.errors}"
    )
    print(
        f"  checkout latency {pct(stats.latencies)}; add-to-cart latency {pct(stats.cart_latencies)}"
    )
    if stats.orders:
        print(f"  SQL statements per order (add to cart + checkout): {spent / stats.orders:.1f}")
    print(report(cpu_before, cpu_after, stats.orders, "order"))
    return stats.orders / elapsed


async def flash(
    url: str, conn: asyncpg.Connection, buyers: int, units: int, concurrency: int
) -> None:
    pid = await conn.fetchval("SELECT id FROM products WHERE is_active ORDER BY id LIMIT 1")
    whs = [r["id"] for r in await conn.fetch("SELECT id FROM warehouses ORDER BY id LIMIT 2")]
    split = [units - units // 2, units // 2][: len(whs)]
    await conn.execute("DELETE FROM reservations WHERE product_id = $1", pid)
    await conn.execute("DELETE FROM cart_items WHERE product_id = $1", pid)
    await conn.execute(
        "UPDATE order_allocations SET state = 'released' WHERE product_id = $1 AND state = 'held'",
        pid,
    )
    await conn.execute("DELETE FROM stock WHERE product_id = $1", pid)
    for wh, qty in zip(whs, split, strict=True):
        await conn.execute(
            "INSERT INTO stock (product_id, warehouse_id, quantity) VALUES ($1, $2, $3)",
            pid,
            wh,
            qty,
        )
    tokens = await make_users(conn, buyers, "flash")
    sold_before = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM order_allocations WHERE product_id = $1 AND state = 'committed'",
        pid,
    )
    stats = Stats()
    gate = asyncio.Semaphore(concurrency)
    async with session(url, concurrency, 120) as client:
        before = await statements(client)
        cpu_before = snapshot()
        start = time.perf_counter()

        async def one(token: str) -> None:
            async with gate:
                await buy(client, token, pid, stats)

        await asyncio.gather(*(one(t) for t in tokens))
        elapsed = time.perf_counter() - start
        cpu_after = snapshot()
        spent = await statements(client) - before
    row = await conn.fetchrow(
        "SELECT sum(quantity) AS q, sum(reserved) AS r FROM stock WHERE product_id = $1", pid
    )
    assert row is not None  # an aggregate always returns its row
    sold = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM order_allocations WHERE product_id = $1 AND state = 'committed'",
        pid,
    )
    bad = await conn.fetchval(
        "SELECT count(*) FROM stock WHERE quantity < 0 OR reserved < 0 OR reserved > quantity"
    )
    sold -= sold_before
    oversold = max(0, sold - units)
    print(
        f"flash sale: {buyers} buyers, 1 product with {units} units, {concurrency} concurrent, {elapsed:.1f}s"
    )
    print(
        f"  sold: {stats.orders} orders / {sold} units, rejected (409): {stats.rejected}, errors: {stats.errors}"
    )
    print(
        f"  oversold units: {oversold}; stock left {row['q']}, reserved {row['r']}; rows breaking invariants: {bad}"
    )
    # The sale lasts until the last unit is paid for; later buyers only get a 409.
    sale = max(stats.last_order_at - start, 1e-9)
    print(
        f"  sold out in {sale:.2f}s: {stats.orders / sale:.1f} orders/s while stock lasted "
        f"({stats.orders / elapsed:.1f} orders/s over all {buyers} buyers)"
    )
    print(
        f"  checkout latency {pct(stats.latencies)}; add-to-cart latency {pct(stats.cart_latencies)}"
    )
    # A buyer who came early and lost waits for the sale to end before its 409.
    print(
        f"  add-to-cart latency of buyers who got the unit {pct(stats.granted_latencies)}, "
        f"of buyers turned away {pct(stats.refused_latencies)}"
    )
    attempts = len(stats.cart_latencies)
    print(f"  SQL statements per buyer (add to cart [+ checkout]): {spent / max(attempts, 1):.1f}")
    print(report(cpu_before, cpu_after, attempts, "buyer"))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--mode", choices=["spread", "flash"], default="spread")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--products", type=int, default=10000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--buyers", type=int, default=1000)
    p.add_argument("--units", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=200)
    args = p.parse_args()
    print(machine_speed())
    conn: Any = await asyncpg.connect(dsn())
    try:
        if args.mode == "spread":
            await spread(args.url, conn, args.clients, args.products, args.seconds)
        else:
            await flash(args.url, conn, args.buyers, args.units, args.concurrency)
    finally:
        await conn.close()


if __name__ == "__main__":
    import uvloop  # the event loop the server runs on, lighter than asyncio's own

    uvloop.run(main())
