from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from emporium.kit.leader import Leadership

HOLD = (
    "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
    "fcntl.flock(f.fileno(), fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
)


async def test_one_process_leads_and_another_takes_over(tmp_path: Path) -> None:
    lock = tmp_path / "background.lock"
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "held"
        elected: list[str] = []

        async def on_elected() -> None:
            elected.append("me")

        follower = Leadership(lock, on_elected, retry_seconds=0.05)
        assert follower.try_acquire() is False
        follower.start()
        await asyncio.sleep(0.3)
        assert (follower.is_leader, elected) == (False, [])
        other.kill()  # the leader process dies; its lock goes with it
        other.wait()
        for _ in range(100):
            if follower.is_leader:
                break
            await asyncio.sleep(0.05)
        assert (follower.is_leader, elected) == (True, ["me"])
        await follower.stop()
        assert follower.is_leader is False
    finally:
        if other.poll() is None:
            other.kill()
