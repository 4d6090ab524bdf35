"""Two versions of the app, side by side over the same seconds: their CPU per order.

    .venv/bin/python bench/server_cpu_pair.py OLD_SRC NEW_SRC [--rounds 3]

OLD_SRC and NEW_SRC are ``src`` directories (a ``git worktree add /tmp/old REV`` gives
one). Each round starts bench/server_cpu.py once per version, both measuring the same
wall-clock window with their background jobs off, so that the machine's speed, which
drifts by half within minutes here, is the same for both; the start order alternates.
Two copies of the same code differed by -5 % to +13 % this way, so a change needs several
rounds that agree. Afterwards the outbox events of the run are marked processed, as no
dispatcher delivered them (left pending, the next server would work them off during its
own benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from checkout import dsn

HERE = Path(__file__).resolve().parent


def start(
    src: str, tag: str, start_at: float, window: float, clients: int
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, str(HERE / "server_cpu.py"), "--no-background", "--tag", tag]
    cmd += ["--clients", str(clients), "--start-at", str(start_at), "--window", str(window)]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def per_order(proc: subprocess.Popen[str]) -> float | None:
    out, _ = proc.communicate()
    m = re.search(r"app \(this process\) ([\d.]+) ms per order", out)
    return float(m.group(1)) if m else None


async def mark_processed() -> None:
    conn = await asyncpg.connect(dsn())
    try:
        await conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
    finally:
        await conn.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=32, help="per version")
    args = p.parse_args()
    asyncio.run(mark_processed())  # also starts the embedded database for both
    for r in range(args.rounds):
        order = [("old", args.old), ("new", args.new)]
        if r % 2:
            order.reverse()
        start_at = time.time() + 15  # both warmed up by then
        procs = {}
        for label, src in order:
            procs[label] = start(src, f"pair{label}{r}", start_at, args.window, args.clients)
            time.sleep(3)  # one embedded-server start at a time
        old, new = per_order(procs["old"]), per_order(procs["new"])
        change = f"{100 * (new - old) / old:+.0f} %" if old and new else "n/a"
        print(
            f"round {r + 1} ({order[0][0]} started first): old {old} ms, new {new} ms per order; {change}"
        )
    asyncio.run(mark_processed())


if __name__ == "__main__":
    main()
