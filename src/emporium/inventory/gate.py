"""A per-process queue in front of each product's stock rows.

In a sell-out every buyer of one product needs the same stock rows. Queued in
PostgreSQL, each waiter holds a connection and a backend, every hand-over of the row
lock waits for the next backend to be scheduled, and the payments of orders already
placed, which must update the same rows, queue behind all of them. Queued here,
waiting costs a coroutine (a caller gives its pooled connection back before it waits):
one reservation per process reaches the rows at a time, and the payments get through.

When the database turns a buyer away with no units left and none to reclaim, the queue
behind it is waved through at once (``wave_through``): that answer came while they
waited, so it is theirs too. Letting them in one by one to ask again would cost a
database call and a turn of the event loop each, and leave the earliest buyers
waiting behind every later one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

# Reservations of one product that one process lets reach the database at once. A
# second one would only wait for the first's row lock in PostgreSQL, ahead of payments:
# in a 1,000-buyer sell-out, 1 instead of 2 halved checkout latency.
IN_FLIGHT_PER_PRODUCT = 1


@dataclass
class _Line:
    inside: int = 0
    users: int = 0  # inside or waiting
    # Each waiter's turn: True when it is let in, False when the queue is waved through.
    waiting: deque[asyncio.Future[bool]] = field(default_factory=deque)


class ProductGate:
    def __init__(self, limit: int = IN_FLIGHT_PER_PRODUCT) -> None:
        self.limit = limit
        # An entry lives only while used, so idle products cost nothing.
        self._lines: dict[int, _Line] = {}

    @asynccontextmanager
    async def enter(self, product_id: int) -> AsyncIterator[bool]:
        """Wait for a place, first come first served. Yields True with a place, or False
        when the queue was waved through (``wave_through``) before this caller's turn:
        the product sold out meanwhile."""
        line = self._lines.setdefault(product_id, _Line())
        line.users += 1
        try:
            admitted = await self._admit(line)
            try:
                yield admitted
            finally:
                if admitted:
                    self._leave(line)
        finally:
            line.users -= 1
            if line.users == 0:
                del self._lines[product_id]

    async def _admit(self, line: _Line) -> bool:
        if line.inside < self.limit and not line.waiting:
            line.inside += 1
            return True
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        line.waiting.append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self._leave(line)  # let in as it was cancelled: the place goes on
            else:
                with contextlib.suppress(ValueError):
                    line.waiting.remove(turn)
            raise

    def _leave(self, line: _Line) -> None:
        line.inside -= 1
        while line.waiting and line.inside < self.limit:
            turn = line.waiting.popleft()
            if not turn.done():
                line.inside += 1
                turn.set_result(True)

    def wave_through(self, product_id: int) -> int:
        """Release every caller waiting for this product without a place, for it sold out;
        returns how many."""
        line = self._lines.get(product_id)
        released = 0
        while line is not None and line.waiting:
            turn = line.waiting.popleft()
            if not turn.done():
                turn.set_result(False)
                released += 1
        return released

    def busy(self, product_id: int) -> bool:
        """Whether a caller arriving now would have to wait."""
        line = self._lines.get(product_id)
        return line is not None and (line.inside >= self.limit or bool(line.waiting))

    def inside(self, product_id: int) -> int:
        """Callers past the queue of this product, not waiting in it."""
        line = self._lines.get(product_id)
        return line.inside if line is not None else 0

    def waiting(self, product_id: int) -> int:
        """Callers waiting in this product's queue."""
        line = self._lines.get(product_id)
        return len(line.waiting) if line is not None else 0

    def in_use(self) -> int:
        """Products with a caller inside or waiting."""
        return len(self._lines)


gate = ProductGate()
