"""A connection pool that serves callers in the order they asked.

asyncpg's own pool gives a returned connection to whichever caller asks next: a waiter
woken for it that finds a newcomer took it first goes back to the end of the line
(asyncio.Queue). Under a burst of requests the earliest callers were then answered
last, after seconds. ``FairPool`` first hands each caller one of ``max_size`` turns, a
freed turn going straight to the caller that has waited longest, so that asyncpg's pool
always has a connection ready for it.

A caller that gave its connection back to wait for something else (a buyer queued at a
product's gate) and now needs one again goes ahead of the callers asking for the first
time: it has already waited its turn once, and in a sell-out it is the one that moves
the sale on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy


class _Turns:
    def __init__(self, size: int) -> None:
        self.free = size
        self.again: deque[asyncio.Future[None]] = deque()
        self.first: deque[asyncio.Future[None]] = deque()

    async def take(self, *, again: bool) -> None:
        if self.free > 0 and not self.again and (again or not self.first):
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane = self.again if again else self.first
        lane.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give()  # handed a turn as it was cancelled: it goes on
            else:
                with contextlib.suppress(ValueError):
                    lane.remove(turn)
            raise

    def give(self) -> None:
        for lane in (self.again, self.first):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self.free += 1


class FairPool(asyncpg.Pool):
    __slots__ = ("_held", "_turns")

    def __init__(self, *args: Any, max_size: int, **kwargs: Any) -> None:
        super().__init__(*args, max_size=max_size, **kwargs)
        self._turns = _Turns(max_size)
        # The proxies handed out, by id: each gives its turn back once, however its
        # connection ended (a connection lost while in use is already detached).
        self._held: dict[int, PoolConnectionProxy[Any]] = {}

    # asyncpg's own signature, timeout included.
    async def _acquire(self, timeout: float | None) -> PoolConnectionProxy[Any]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            return await self._lease(again=False)

    async def acquire_again(self) -> PoolConnectionProxy[Any]:
        """A connection for a caller that gave one back to wait: ahead of first askers.
        Give it back with ``release``."""
        return await self._lease(again=True)

    async def _lease(self, *, again: bool) -> PoolConnectionProxy[Any]:
        await self._turns.take(again=again)
        try:
            proxy: PoolConnectionProxy[Any] = await super()._acquire(None)  # type: ignore[misc]
        except BaseException:
            self._turns.give()
            raise
        self._held[id(proxy)] = proxy
        return proxy

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if self._held.pop(id(connection), None) is not None:
                self._turns.give()
