"""CPU per outbox batch: the dispatcher's fixed cost, which it pays many times a second
under load.

    .venv/bin/python bench/outbox_batch.py [--events 3] [--batches 200]

Runs the app in-process (background jobs off) against the database of
EMPORIUM_DATABASE_URL, or the embedded one under EMPORIUM_DATA_DIR; stop any server on
that data directory first. Each round writes ``--events`` outbox rows (a third of them
stock.changed for real products, the rest order events) and delivers them with one
``dispatch_once``; it prints the CPU per batch of the whole process and of its main
thread (the search index's calls run in worker threads). Events already pending are
marked processed first, and the bench's own events are left processed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import asyncpg

from checkout import dsn
from emporium.config import get_settings
from emporium.main import create_app

WARM_UP = 20


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=3, help="events per batch")
    p.add_argument("--batches", type=int, default=200)
    args = p.parse_args()
    conn = await asyncpg.connect(dsn())
    try:
        ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM products WHERE is_active ORDER BY id LIMIT 10000"
            )
        ]
        await conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
        rng = random.Random(7)
        app = create_app(get_settings(), background=False)
        async with app.router.lifespan_context(app):
            dispatcher = app.state.dispatcher
            process: list[float] = []
            main_thread: list[float] = []
            for n in range(WARM_UP + args.batches):
                rows = [
                    ("stock.changed", "product", str(rng.choice(ids)))
                    if i % 3 == 0
                    else ("order.paid", "order", str(rng.randint(1, 10**9)))
                    for i in range(args.events)
                ]
                await conn.executemany(
                    "INSERT INTO outbox (topic, aggregate_type, aggregate_id) VALUES ($1, $2, $3)",
                    rows,
                )
                cpu, own = time.process_time(), time.thread_time()
                delivered = await dispatcher.dispatch_once()
                if delivered != args.events:
                    raise SystemExit(f"delivered {delivered} of {args.events} events")
                if n >= WARM_UP:
                    process.append(time.process_time() - cpu)
                    main_thread.append(time.thread_time() - own)
    finally:
        await conn.close()
    print(f"outbox_batch: {args.batches} batches of {args.events} events")
    print(
        f"  CPU per batch: process {1000 * statistics.median(process):.2f} ms (median), "
        f"main thread {1000 * statistics.median(main_thread):.2f} ms"
    )


if __name__ == "__main__":
    import uvloop  # the server's event loop

    uvloop.run(main())
