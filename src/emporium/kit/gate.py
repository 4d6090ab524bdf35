"""A per-process queue per key, first come first served, whose holder may serve the
callers queued behind it.

For work that many concurrent requests need on the same thing (a product's stock rows,
the users table): one caller per key at a time does the work (``limit``), the others wait
as coroutines, holding no database connection. The caller let in may take those queued
behind it along (``take_riders``) and do their work in the same database call, serving
each its own outcome: handing the turn from caller to caller costs a turn of a busy
event loop, several milliseconds under load, far more than the work in the database.
``wave_through`` answers every waiter at once when the holder learns that none of them
can succeed (a sold-out product).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Kind(Enum):
    LEAD = "lead"  # holds a place: does its own work, and its riders'
    SERVED = "served"  # a caller ahead did the work: the outcome is in the turn
    WAVED = "waved"  # waved through: none of the queue could succeed


@dataclass(frozen=True)
class Turn:
    kind: Kind
    outcome: Any = None


_LEAD = Turn(Kind.LEAD)
_WAVED = Turn(Kind.WAVED)


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Turn]
    payload: Any


@dataclass(eq=False)
class Rider:
    """A queued caller taken along; it waits until served its outcome."""

    payload: Any
    _future: asyncio.Future[Turn]

    def serve(self, outcome: Any) -> None:
        if not self._future.done():  # a rider cancelled meanwhile gets nothing
            self._future.set_result(Turn(Kind.SERVED, outcome))


@contextmanager
def shared_failure(riders: Sequence[Rider]) -> Iterator[None]:
    """Serve every rider the error that ends the block (the call made for them): none
    may wait forever, and none may try again on its own, as whether the call took effect
    is unknown. A cancellation reaches them as a RuntimeError; they were not cancelled."""
    try:
        yield
    except BaseException as exc:
        failed = exc if isinstance(exc, Exception) else RuntimeError("interrupted")
        for rider in riders:
            rider.serve(failed)
        raise


@dataclass
class _Line:
    inside: int = 0
    users: int = 0  # inside, riding or waiting
    waiting: deque[_Waiter] = field(default_factory=deque)


class Gate:
    def __init__(self, limit: int = 1) -> None:
        self.limit = limit
        # An entry lives only while used, so idle keys cost nothing.
        self._lines: dict[Hashable, _Line] = {}

    @asynccontextmanager
    async def enter(self, key: Hashable, payload: Any = None) -> AsyncIterator[Turn]:
        """Wait for a turn, first come first served. A caller with a payload may be taken
        along by one ahead of it (``take_riders``) and then gets its outcome instead of a
        place; see Kind for the rest."""
        line = self._lines.setdefault(key, _Line())
        line.users += 1
        try:
            turn = await self._admit(line, payload)
            try:
                yield turn
            finally:
                if turn is _LEAD:
                    self._leave(line)
        finally:
            line.users -= 1
            if line.users == 0:
                del self._lines[key]

    async def _admit(self, line: _Line, payload: Any) -> Turn:
        if line.inside < self.limit and not line.waiting:
            line.inside += 1
            return _LEAD
        waiter = _Waiter(asyncio.get_running_loop().create_future(), payload)
        line.waiting.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.result() is _LEAD:
                self._leave(line)  # let in as it was cancelled: the place goes on
            else:
                with contextlib.suppress(ValueError):
                    line.waiting.remove(waiter)
            raise

    def _leave(self, line: _Line) -> None:
        line.inside -= 1
        while line.waiting and line.inside < self.limit:
            waiter = line.waiting.popleft()
            if not waiter.future.done():
                line.inside += 1
                waiter.future.set_result(_LEAD)

    def take_riders(self, key: Hashable, limit: int) -> list[Rider]:
        """Up to ``limit`` of the callers queued first that carry a payload, taken out of
        the queue, in the order they came; the caller holding the place must serve each."""
        line = self._lines.get(key)
        riders: list[Rider] = []
        if line is None:
            return riders
        kept: deque[_Waiter] = deque()
        while line.waiting and len(riders) < limit:
            waiter = line.waiting.popleft()
            if waiter.future.done():
                continue
            if waiter.payload is None:
                kept.append(waiter)
            else:
                riders.append(Rider(waiter.payload, waiter.future))
        kept.extend(line.waiting)
        line.waiting = kept
        return riders

    def wave_through(self, key: Hashable) -> int:
        """Release every caller waiting for this key without a place (none of them could
        succeed); returns how many."""
        line = self._lines.get(key)
        released = 0
        while line is not None and line.waiting:
            waiter = line.waiting.popleft()
            if not waiter.future.done():
                waiter.future.set_result(_WAVED)
                released += 1
        return released

    def busy(self, key: Hashable) -> bool:
        """Whether a caller arriving now would have to wait."""
        line = self._lines.get(key)
        return line is not None and (line.inside >= self.limit or bool(line.waiting))

    def inside(self, key: Hashable) -> int:
        """Callers holding a place for this key, not waiting for one."""
        line = self._lines.get(key)
        return line.inside if line is not None else 0

    def waiting(self, key: Hashable) -> int:
        """Callers waiting in this key's queue."""
        line = self._lines.get(key)
        return len(line.waiting) if line is not None else 0

    def in_use(self) -> int:
        """Keys with a caller inside, riding or waiting."""
        return len(self._lines)


async def shared_call(
    gate: Gate,
    key: Hashable,
    payload: Any,
    call: Callable[[list[Any]], Awaitable[list[Any]]],
    riders: int,
) -> Any:
    """This caller's outcome of ``call``, made by this caller for itself and up to
    ``riders`` of those queued behind it, or by one ahead of it. ``call`` gets their
    payloads, this caller's first, and returns one outcome each; an outcome that is an
    exception is raised in its own caller. A call made for riders runs to its end even
    if the caller that made it is cancelled: they get their outcomes all the same."""
    async with gate.enter(key, payload) as turn:
        if turn.kind is Kind.SERVED:
            outcome = turn.outcome
        else:
            taken = gate.take_riders(key, riders)
            if taken:
                made = asyncio.ensure_future(call([payload, *(r.payload for r in taken)]))
                made.add_done_callback(functools.partial(_serve, taken))
                outcomes = await asyncio.shield(made)
            else:
                outcomes = await call([payload])
            outcome = outcomes[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _serve(riders: Sequence[Rider], made: asyncio.Future[list[Any]]) -> None:
    """Serve the riders of a finished call their outcomes, or the error that ended it."""
    error = None if made.cancelled() else made.exception()
    if made.cancelled() or error is not None:
        failed = error if isinstance(error, Exception) else RuntimeError("interrupted")
        for rider in riders:
            rider.serve(failed)
        return
    for rider, served in zip(riders, made.result()[1:], strict=True):
        rider.serve(served)
