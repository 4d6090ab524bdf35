"""Plain SQL on the session's own connection and transaction, for the hot paths.

Add to cart and checkout run a handful of set-based statements each. Sending them
straight to asyncpg skips the ORM's per-statement compile and flush work (most of a
request's CPU time) while staying inside the request's unit of work: same connection,
same transaction, same commit or rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from emporium.kit.metrics import DB_STATEMENTS

Listener = Callable[[str, tuple[Any, ...]], None]
# Statement observers (benchmarks capture a request's SQL); normally empty.
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    _listeners.remove(listener)


class Sql:
    """Counted statements on one transaction's asyncpg connection."""

    __slots__ = ("_conn", "_owner")

    def __init__(self, conn: asyncpg.Connection, owner: AsyncConnection) -> None:
        self._conn = conn
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

    async def _run(self, method: Any, query: str, args: tuple[Any, ...]) -> Any:
        DB_STATEMENTS.inc()
        for listener in _listeners:
            listener(query, args)
        try:
            return await method(query, *args)
        except _DISCONNECTS:
            # A dead connection must not go back to the pool.
            await self._owner.invalidate()
            raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run(self._conn.fetch, query, args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run(self._conn.fetchrow, query, args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(self._conn.fetchval, query, args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await self._run(self._conn.execute, query, args)
        return status


_DISCONNECTS = (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)
