"""Server CPU per order, in-process: the whole app without HTTP sockets or a load generator.

    .venv/bin/python bench/server_cpu.py [--orders 1500] [--clients 64] [--profile] [--pin]

Orders per second over HTTP (bench/checkout.py) move with everything else on the
machine; the CPU the app spends per order moves much less, so it is the figure to
compare when changing the request path. The app runs in this process with its
background jobs (the outbox dispatcher and search indexer among them) and is driven
through ASGI directly, as in bench/checkout.py: add to cart, then checkout. It uses the
database of EMPORIUM_DATABASE_URL, or the embedded one under EMPORIUM_DATA_DIR; stop any
server on that data directory first, or its process runs the background jobs instead.

Prints the app's CPU per order (this process, all threads), PostgreSQL's and Valkey's,
and with --profile the packages where the app's own time went. The app's own logs go to
standard error.

--pin keeps the app on one core and moves PostgreSQL and Valkey to the others (it needs
the right to set their affinity: their owner, or root). Sharing cores, a backend woken by
a query preempts the app, and a wall-clock profiler (cProfile here, py-spy from outside)
charges that wait to whatever the app was running: asyncpg's query call then seemed to
take 12 % of the app's time, and 3 % pinned. Pinned, the CPU per order is
not comparable with unpinned runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import re
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
from cpu_share import snapshot, used

from checkout import ADDRESS, CARD, dsn, make_users, stock_up
from emporium.config import get_settings
from emporium.main import create_app

App = Any
Message = dict[str, Any]


async def call(app: App, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    """One POST through the ASGI app; the status."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    status = 0

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # nobody disconnects
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def buyer(app: App, token: str, ids: list[int], orders: int, errors: Counter[str]) -> int:
    rng = random.Random(token)
    auth = {"authorization": f"Bearer {token}"}
    placed = 0
    for _ in range(orders):
        line = {"product_id": rng.choice(ids), "quantity": 1}
        status = await call(app, "/api/v1/cart/items", line, auth)
        if status != 200:
            errors[f"cart {status}"] += 1
            continue
        body = {"shipping_address": ADDRESS, "payment": CARD}
        key = {**auth, "idempotency-key": uuid.uuid4().hex}
        status = await call(app, "/api/v1/checkout", body, key)
        if status != 201:
            errors[f"checkout {status}"] += 1
            continue
        placed += 1
    return placed


def packages(profile: cProfile.Profile, top: int) -> list[str]:
    own: Counter[str] = Counter()
    stats: Any = pstats.Stats(profile)
    for (path, _, _), (_, _, tottime, _, _) in stats.stats.items():
        for pattern in (r"site-packages/([^/]+)", r"src/(emporium/[^/]+)", r"python3\.\d+/([^/]+)"):
            if m := re.search(pattern, path):
                path = m.group(1)
                break
        own[path] += tottime
    total = sum(own.values()) or 1.0
    return [f"  {100 * t / total:5.1f} % {name}" for name, t in own.most_common(top)]


async def windowed(
    app: App, tokens: list[str], ids: list[int], start_at: float, seconds: float
) -> tuple[int, float, float, Counter[str]]:
    """Orders placed and CPU spent between two wall-clock instants, with every client
    busy throughout: two processes given the same window compare on the same machine
    speed (bench/server_cpu_pair.py)."""
    errors: Counter[str] = Counter()
    end = start_at + seconds
    counted = {"on": False, "placed": 0}

    async def client(token: str) -> None:
        while time.time() < end + 0.5:
            placed = await buyer(app, token, ids, 1, errors)
            if counted["on"]:
                counted["placed"] += placed

    tasks = [asyncio.create_task(client(t)) for t in tokens]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    counted["on"] = True
    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.sleep(max(0.0, end - time.time()))
    counted["on"] = False
    cpu, wall = time.process_time() - cpu, time.perf_counter() - start
    await asyncio.gather(*tasks)
    return counted["placed"], cpu, wall, errors


def pin() -> dict[int, set[int]]:
    """This process's threads (and those it starts later) on the first core; the processes
    of PostgreSQL and Valkey on the others, new backends too (they inherit the
    postmaster's). Returns the affinities it changed, for ``unpin``."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("--pin: one core only, nothing pinned")
        return {}
    changed: dict[int, set[int]] = {}
    for task in map(int, os.listdir("/proc/self/task")):
        changed[task] = os.sched_getaffinity(task)
        os.sched_setaffinity(task, {cores[0]})
    refused = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                comm = f.read().strip()
            if not (comm.startswith("postgres") or "valkey" in comm):
                continue
            for task in map(int, os.listdir(f"/proc/{entry.name}/task")):
                before = os.sched_getaffinity(task)
                os.sched_setaffinity(task, set(cores[1:]))
                changed[task] = before
        except PermissionError:
            refused += 1
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    print(f"--pin: the app on core {cores[0]}, PostgreSQL and Valkey on {cores[1:]}")
    if refused:
        print(f"--pin: not allowed to move {refused} database processes")
    return changed


def unpin(changed: dict[int, set[int]]) -> None:
    for task, cores in changed.items():
        try:
            os.sched_setaffinity(task, cores)
        except (ProcessLookupError, PermissionError):
            continue


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=1500)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--products", type=int, default=10000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--dump", help="with --profile, also write the raw profile here (pstats)")
    p.add_argument("--no-background", action="store_true", help="no outbox dispatcher or jobs")
    p.add_argument("--start-at", type=float, help="measure from this Unix time ...")
    p.add_argument("--window", type=float, default=10.0, help="... for this many seconds")
    p.add_argument("--tag", default="cpu", help="prefix of the benchmark users' e-mails")
    p.add_argument("--pin", action="store_true", help="app and database on separate cores")
    args = p.parse_args()
    conn: Any = await asyncpg.connect(dsn())
    try:
        ids = await stock_up(conn, args.products)
        tokens = await make_users(conn, args.clients, args.tag)
    finally:
        await conn.close()
    app = create_app(get_settings(), background=not args.no_background)
    async with app.router.lifespan_context(app):
        errors: Counter[str] = Counter()
        # Warm up: pool connections, prepared statements, caches.
        await asyncio.gather(*(buyer(app, t, ids, 2, errors) for t in tokens))
        # After the start-up, which may have started the embedded Valkey as a child.
        pinned = pin() if args.pin else {}
        try:
            await run(app, args, ids, tokens, errors)
        finally:
            unpin(pinned)


async def run(
    app: App, args: argparse.Namespace, ids: list[int], tokens: list[str], errors: Counter[str]
) -> None:
    if args.start_at is not None:
        placed, cpu, wall, errors = await windowed(app, tokens, ids, args.start_at, args.window)
        print(f"server_cpu: {placed} orders, {wall:.1f}s window, errors: {dict(errors)}")
        if placed:
            print(f"  app (this process) {1000 * cpu / placed:.2f} ms per order")
        return
    each = max(args.orders // len(tokens), 1)
    profile = cProfile.Profile() if args.profile else None
    before, cpu, start = snapshot(), time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    placed = sum(await asyncio.gather(*(buyer(app, t, ids, each, errors) for t in tokens)))
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - start
    after = snapshot()
    print(
        f"server_cpu: {placed} orders, {len(tokens)} clients, {wall:.1f}s, errors: {dict(errors)}"
    )
    if not placed:
        return
    line = f"  app (this process) {1000 * cpu / placed:.2f} ms per order"
    if before is not None and after is not None:
        spent = used(before, after)
        line += "".join(f", {g} {1000 * spent[g] / placed:.2f} ms" for g in ("postgres", "valkey"))
    print(line + (" (under the profiler)" if profile else ""))
    if profile is not None:
        print("\n".join(packages(profile, 20)))
        if args.dump:
            profile.dump_stats(args.dump)


if __name__ == "__main__":
    import uvloop  # the server's event loop (uvicorn picks it when installed)

    uvloop.run(main())
