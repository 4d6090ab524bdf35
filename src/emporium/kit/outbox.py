"""Transactional outbox: events are rows written with the change, delivered after commit.

Delivery is at least once: a batch is locked with ``FOR UPDATE SKIP LOCKED``, handed to
the handlers and marked processed in the same transaction, so a crash redelivers it.
Handlers must therefore be idempotent.

Writers wake the dispatcher after commit (:func:`written`), not with a NOTIFY inside the
writing transaction: PostgreSQL serialises the commits of notifying transactions behind
one lock, which halved checkout throughput. A dispatcher in the same process is woken
directly; one in another process gets one NOTIFY per ``NOTIFY_INTERVAL`` at most; and a
poll every ``outbox_poll_seconds`` delivers whatever no signal announced.

A woken dispatcher lingers ``outbox_linger_seconds`` before it reads, as a Kafka producer
does: a batch costs about the same whatever its size (one read, one update, one index
lookup per handler), so under load a few large batches are far cheaper than one per
commit, for a delay of that much.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.kit.db import UnitOfWork, after_commit, transaction
from emporium.kit.jobs import PeriodicJob
from emporium.kit.metrics import OUTBOX_DISPATCHED, OUTBOX_LAG, OUTBOX_PURGED
from emporium.models import OutboxEvent

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "emporium_outbox"
NOTIFY_INTERVAL = 0.05
Handler = Callable[[Sequence[OutboxEvent]], Awaitable[None]]


class OutboxSignal:
    """Wakes the dispatcher once events have committed (see the module docstring)."""

    def __init__(self) -> None:
        self._local: list[asyncio.Event] = []
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.notifies = 0

    def bind(self, pool: asyncpg.Pool) -> None:
        """Send cross-process wake-ups through ``pool`` (the server's plain pool)."""
        self._pool, self._task, self._again = pool, None, False
        self._loop = asyncio.get_running_loop()

    def unbind(self, pool: asyncpg.Pool) -> None:
        if self._pool is pool:
            self._pool = None

    def attach(self, wake: asyncio.Event) -> None:
        self._local.append(wake)

    def detach(self, wake: asyncio.Event) -> None:
        with contextlib.suppress(ValueError):
            self._local.remove(wake)

    async def fire(self) -> None:
        if self._local:
            for wake in self._local:
                wake.set()
            return
        # A pool serves only the loop it was made on; writers on any other loop (a
        # script, a test's own loop) are left to the dispatcher's poll.
        if self._pool is None or self._loop is not asyncio.get_running_loop():
            return
        task = self._task
        if task is not None and not task.done():
            self._again = True  # the running sender goes once more at the end of its window
            return
        self._task = asyncio.create_task(self._notify(self._pool), name="outbox-notify")

    async def _notify(self, pool: asyncpg.Pool) -> None:
        # Once the pool is unbound (shutdown), a last wake-up would find it closed.
        while self._pool is pool:
            self._again = False
            try:
                await pool.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
                self.notifies += 1
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox.notify_failed", error=str(exc))  # the poll still delivers
            await asyncio.sleep(NOTIFY_INTERVAL)
            if not self._again:
                return


signal = OutboxSignal()


def written() -> None:
    """The current unit of work wrote outbox rows: wake the dispatcher once it commits."""
    with contextlib.suppress(RuntimeError):  # outside a unit of work, the poll delivers
        after_commit(signal.fire, once=True)


def record_event(
    session: AsyncSession,
    topic: str,
    aggregate_type: str,
    aggregate_id: int | str,
    payload: dict[str, Any] | None = None,
) -> None:
    session.add(
        OutboxEvent(
            topic=topic,
            aggregate_type=aggregate_type,
            aggregate_id=str(aggregate_id),
            payload=payload or {},
        )
    )
    written()


_PENDING = """
SELECT id, topic, aggregate_type, aggregate_id, payload, processed_at, created_at
FROM outbox WHERE processed_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_PROCESSED = "UPDATE outbox SET processed_at = now() WHERE id = ANY($1::bigint[])"


def _raise_if_cancelled() -> None:
    """Deliver a cancellation that something below swallowed.

    A stop() landing while a batch was delivered was seen lost on Python 3.11: the batch
    returned normally, the task stayed marked as cancelling, and every later
    ``asyncio.timeout`` took its own expiry for that cancellation, so stop() waited for
    ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class OutboxDispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        handlers: Sequence[Handler],
        *,
        listen_dsn: str | None = None,
        poll_seconds: float = 1.0,
        linger_seconds: float = 0.0,
        batch_size: int = 500,
    ) -> None:
        self._pool = pool
        self._handlers = list(handlers)
        self._listen_dsn = listen_dsn
        self._poll_seconds = poll_seconds
        self._linger_seconds = linger_seconds
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.last_error: str | None = None

    async def dispatch_once(self) -> int:
        """Deliver one batch; returns how many events it delivered."""
        # The plain pool, plain SQL and plain rows made into instances: under load the
        # dispatcher runs many times a second, and a session's upkeep and the ORM's
        # statement machinery cost several times the handlers' own work.
        async with transaction(self._pool) as db:
            rows = await db.fetch(_PENDING, self._batch_size)
            events = [OutboxEvent.from_row(dict(row)) for row in rows]
            if not events:
                return 0
            for handler in self._handlers:
                await handler(events)
            await db.execute(_PROCESSED, [e.id for e in events])
        for topic, n in Counter(e.topic for e in events).items():
            OUTBOX_DISPATCHED.labels(topic).inc(n)
        return len(events)

    async def drain(self, *, until_partial: bool = False) -> int:
        """Deliver until nothing is pending; with ``until_partial``, until a batch is
        not full (what is written meanwhile waits for the next wake-up and linger)."""
        total = 0
        while n := await self.dispatch_once():
            total += n
            if until_partial and n < self._batch_size:
                break
        return total

    async def pending(self) -> int:
        async with transaction(self._pool, single=True) as db:
            count = await db.fetchval("SELECT count(*) FROM outbox WHERE processed_at IS NULL")
        return int(count)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        if self._listen_dsn is None:
            return
        try:
            self._conn = await asyncpg.connect(self._listen_dsn)
            await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox.listen_failed", error=str(exc))  # polling still delivers

    async def _run(self) -> None:
        signal.attach(self._wake)
        await self._listen()
        backoff = self._poll_seconds
        while True:
            # Cleared before the drain: a wake-up during it means events it may have
            # missed, so the next round starts at once.
            self._wake.clear()
            try:
                delivered = await self.drain(until_partial=True)
                self.last_error = None
                backoff = self._poll_seconds
                if delivered:
                    log.debug("outbox.delivered", count=delivered)
                OUTBOX_LAG.set(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("outbox.dispatch_failed")
                backoff = min(backoff * 2, 30.0)
                self._wake.clear()  # a failing consumer waits out its backoff
            _raise_if_cancelled()
            # Not wait_for: on Python 3.11 it drops a cancellation that lands together
            # with the wake-up, and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()
            if self._wake.is_set() and self._linger_seconds > 0:
                await asyncio.sleep(self._linger_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        signal.detach(self._wake)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


# The first event written after the cutoff bounds the delete, read once per round: each
# batch then starts where the last ended and reads only the rows it removes. Pending
# events stay, whatever their age: they are still owed to a consumer.
_PURGE_BOUND = text(
    """
    WITH cutoff AS MATERIALIZED (SELECT now() - make_interval(secs => :retention) AS at)
    SELECT cutoff.at AS cutoff, coalesce(
        (SELECT id FROM outbox WHERE created_at >= cutoff.at ORDER BY id LIMIT 1),
        (SELECT max(id) + 1 FROM outbox),
        0) AS bound
    FROM cutoff
    """
)
_PURGE = text(
    """
    WITH gone AS (
        DELETE FROM outbox WHERE id = ANY (ARRAY(
            SELECT id FROM outbox
            WHERE id > :after AND id < :bound
                AND processed_at IS NOT NULL AND created_at < :cutoff
            ORDER BY id LIMIT :batch
        ))
        RETURNING id
    )
    SELECT count(*) AS deleted, max(id) AS last FROM gone
    """
)


class OutboxPurger(PeriodicJob):
    """Deletes delivered events once they are older than the retention.

    Three events per order would otherwise stay for ever: three million rows a day at a
    million orders a day. The retention is the window in which delivered events can
    still be replayed (a search rebuild replays only the last minute).
    """

    name = "outbox-purger"

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        *,
        retention: timedelta,
        interval_seconds: float = 600.0,
        batch: int = 5000,
    ) -> None:
        super().__init__(interval_seconds)
        self._maker = maker
        self._retention = retention
        self._batch = batch

    async def run_once(self) -> int:
        """Delete every delivered event past the retention, batch by batch; how many."""
        async with UnitOfWork(self._maker) as session:
            window = (
                await session.execute(_PURGE_BOUND, {"retention": self._retention.total_seconds()})
            ).one()
        total, after = 0, 0
        while True:
            async with UnitOfWork(self._maker) as session:
                deleted, last = (
                    await session.execute(
                        _PURGE,
                        {
                            "after": after,
                            "bound": window.bound,
                            "cutoff": window.cutoff,
                            "batch": self._batch,
                        },
                    )
                ).one()
            total += int(deleted)
            if deleted < self._batch:
                break
            after = last
        if total:
            OUTBOX_PURGED.inc(total)
            log.info("outbox.purged", events=total)
        return total
