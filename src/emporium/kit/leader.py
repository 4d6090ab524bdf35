"""One process per data directory runs the background jobs.

With several server processes, the outbox dispatcher (and with it the search index writer),
the reservation reaper and the payment reconciler must run in exactly one. An exclusive
``flock`` on a file in the data directory elects it; the others keep trying, so the role
moves on if the leader exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import structlog

log = structlog.get_logger(__name__)


class Leadership:
    def __init__(
        self, lock_path: Path, on_elected: Callable[[], Awaitable[None]], retry_seconds: float = 5.0
    ) -> None:
        self.lock_path = lock_path
        self.on_elected = on_elected
        self.retry_seconds = retry_seconds
        self.is_leader = False
        self._file: IO[str] | None = None
        self._task: asyncio.Task[None] | None = None

    def try_acquire(self) -> bool:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    async def _campaign(self) -> None:
        # A file lock has no wake-up signal to wait on: poll it.
        while True:
            if self.try_acquire():
                break
            await asyncio.sleep(self.retry_seconds)
        self.is_leader = True
        log.info("leader.elected", pid=os.getpid())
        await self.on_elected()

    def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name="leader-election")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self.is_leader = False
