"""Checkout over HTTP against the database's own limit, back to back, in one command.

    .venv/bin/python bench/vs_pgbench.py [--rounds 3] [--seconds 20] [--workers 2]

Each round starts ``emporium serve`` (on the database of EMPORIUM_DATABASE_URL, or the
embedded one under EMPORIUM_DATA_DIR), warms it with a 5-second spread run, runs the
spread benchmark of bench/checkout.py, stops the server, and replays the same SQL with
pgbench (bench/pgbench_checkout.py --run) for as long. It prints both rates and the
HTTP rate as a share of pgbench's.

Stop any other server on that database first: its work would count against both.
The server is stopped before pgbench runs: its background jobs would otherwise consume
pgbench's outbox events during the replay, and their work would count against the
database's limit (12-15 % of pgbench's rate when measured). The machine's speed can
drift between runs minutes apart, so each ratio is taken within one round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import cpu_share
from http_client import Client

from checkout import dsn, pgbench_rate, spread

LOG = Path(os.environ.get("TMPDIR", "/tmp")) / "emporium-vs-pgbench.server.log"
READY_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(url: str, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.returncode is not None:
            raise SystemExit(f"the server exited with {server.returncode}; see {LOG}")
        try:
            async with Client(url, 1, 2.0) as client:
                status, _ = await client.send("GET", "/api/health/ready")
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit(f"the server was not ready within {READY_SECONDS:.0f}s; see {LOG}")


async def stop(server: asyncio.subprocess.Process) -> None:
    # The whole group: uvicorn's supervisor and its worker processes.
    os.killpg(server.pid, signal.SIGINT)
    try:
        await asyncio.wait_for(server.wait(), 30)
    except TimeoutError:
        os.killpg(server.pid, signal.SIGKILL)
        await server.wait()


async def one_round(conn: Any, args: argparse.Namespace) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emporium = Path(sys.executable).with_name("emporium")
    cmd = [str(emporium), "serve", "--port", str(port), "--workers", str(args.workers)]
    log = await asyncio.to_thread(LOG.open, "ab")
    server = await asyncio.create_subprocess_exec(
        *cmd, stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    try:
        await wait_ready(url, server)
        print("warm-up (5 s spread, not counted)")
        await spread(url, conn, args.clients, args.products, 5.0, quiet=True)
        rate = await spread(url, conn, args.clients, args.products, args.seconds)
    finally:
        await stop(server)
    limit = await asyncio.to_thread(pgbench_rate, args.seconds)
    return rate, limit


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--products", type=int, default=10000)
    args = p.parse_args()
    # This process keeps the embedded database up while the server is down.
    conn: Any = await asyncpg.connect(dsn())
    ratios: list[float] = []
    try:
        for n in range(1, args.rounds + 1):
            print(f"--- round {n} of {args.rounds}")
            print(cpu_share.machine_speed())
            rate, limit = await one_round(conn, args)
            ratios.append(rate / limit)
            print(f"  pgbench, same SQL, server stopped: {limit:.1f} checkouts/s")
            print(f"  HTTP reaches {100 * rate / limit:.0f} % of the database's limit")
    finally:
        await conn.close()
    shares = ", ".join(f"{100 * r:.0f} %" for r in ratios)
    print(f"share of pgbench per round: {shares}; median {100 * statistics.median(ratios):.0f} %")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
