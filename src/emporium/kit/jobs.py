"""A background job that runs ``run_once`` every ``interval`` seconds until stopped, or
until a one-off job sets ``finished``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class PeriodicJob:
    name = "job"

    def __init__(self, interval_seconds: float) -> None:
        self.interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.finished = False

    async def run_once(self) -> Any:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the job alive; the next round retries
                self.last_error = repr(exc)
                log.exception("job.failed", job=self.name)
            if self.finished:
                return
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()
