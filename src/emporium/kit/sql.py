"""Plain SQL for the hot paths: add to cart, checkout, and the caller's identity.

These run a handful of set-based statements each. Sending them straight to asyncpg
skips the ORM's per-statement compile and flush work and the session's own upkeep,
most of a request's CPU time. A unit of work is either a session's transaction
(:meth:`Sql.of`) or one taken from the plain pool (``emporium.kit.db.transaction``),
with the same rules: commit on success, roll back on error, side effects after commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from emporium.kit import jsoncodec
from emporium.kit.metrics import DB_STATEMENTS
from emporium.kit.pool import FairPool

Listener = Callable[[str, tuple[Any, ...]], None]
# Statement observers (benchmarks capture a request's SQL), also told of the plain
# pool's BEGIN, COMMIT and ROLLBACK; normally empty.
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    _listeners.remove(listener)


class Sql:
    """Counted statements on one transaction's asyncpg connection."""

    __slots__ = ("_conn", "_owner")

    def __init__(
        self,
        conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record],
        owner: AsyncConnection | None = None,
    ) -> None:
        self._conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record] | None = conn
        self._owner = owner

    @classmethod
    async def of(cls, session: AsyncSession) -> Sql:
        conn = await session.connection()
        fairy = await conn.get_raw_connection()
        adapted: Any = fairy.dbapi_connection
        # SQLAlchemy opens the transaction lazily on its first statement; open it now so
        # these statements belong to the unit of work and not to autocommit.
        if adapted._transaction is None:
            await adapted._start_transaction()
        return cls(cast(asyncpg.Connection, adapted._connection), conn)

    @classmethod
    async def from_(cls, source: AsyncSession | Sql) -> Sql:
        """The plain-SQL side of a unit of work, whichever kind it is."""
        return source if isinstance(source, Sql) else await cls.of(source)

    async def begin(self) -> None:
        """Open the unit of work's transaction before its first write.

        A no-op unless the unit of work is lazy (``transaction(pool, lazy=True)``): there,
        the reads before this call run on their own, so a request turned away by them
        costs no BEGIN and no ROLLBACK.
        """

    async def pause(self) -> None:
        """Give the connection back while nothing is open on it, before a wait; the next
        statement takes one again. A no-op unless the unit of work is lazy."""

    async def _connection(self) -> asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]:
        if self._conn is None:
            raise asyncpg.InterfaceError("this unit of work is over")
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None and bool(self._conn.is_in_transaction())

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """A transaction of its own, or a savepoint inside the open one."""
        async with (await self._connection()).transaction():
            yield

    async def _run(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        DB_STATEMENTS.inc()
        for listener in _listeners:
            listener(query, args)
        try:
            return await getattr(await self._connection(), method)(query, *args)
        except _DISCONNECTS:
            # A dead connection must not go back to the session's pool (the plain pool
            # checks its connections itself).
            if self._owner is not None:
                await self._owner.invalidate()
            raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run("fetch", query, args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run("fetchrow", query, args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run("fetchval", query, args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await self._run("execute", query, args)
        return status


_DISCONNECTS = (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back decoded, as through the ORM; JSON goes in as text.
    await conn.set_type_codec(
        "jsonb",
        encoder=jsoncodec.dumps,
        decoder=jsoncodec.loads,
        schema="pg_catalog",
        format="text",
    )
    await conn.set_type_codec(
        "json", encoder=jsoncodec.dumps, decoder=jsoncodec.loads, schema="pg_catalog", format="text"
    )


def to_libpq_url(url: str) -> str:
    """``postgresql+asyncpg://`` (SQLAlchemy) to ``postgresql://`` (asyncpg, libpq)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _keep_session_state(_: asyncpg.Connection) -> None:
    # Nothing on these connections sets session state (no SET, LISTEN or advisory
    # locks), so the default reset query on every release would be a wasted round trip.
    # asyncpg still rolls back any open transaction first.
    return None


async def create_pool(
    dsn: str,
    size: int,
    *,
    warm: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """The plain connection pool of one server process; ``warm`` runs on every new
    connection before it is handed out.

    Every connection is opened at start and kept while idle: a new backend spends tens
    of milliseconds of database CPU compiling the checkout functions and loading its
    caches, so a pool that shrank in a quiet spell would pay that for each connection it
    reopens in the next rush, when it can least afford it.
    """

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        if warm is not None:
            await warm(conn)

    pool = FairPool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=size,
        max_size=size,
        max_queries=50000,
        max_inactive_connection_lifetime=0,
        connect=None,
        setup=None,
        init=init,
        reset=_keep_session_state,
        loop=None,
    )
    await pool
    return pool


def notify(boundary: str) -> None:
    for listener in _listeners:
        listener(boundary, ())
