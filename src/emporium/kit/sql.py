"""Plain SQL on the session's own connection and transaction, for the hot paths.

Add to cart and checkout run a handful of set-based statements each. Sending them
straight to asyncpg skips the ORM's per-statement compile and flush work (most of a
request's CPU time) while staying inside the request's unit of work: same connection,
same transaction, same commit or rollback.
"""

from __future__ import annotations

from typing import Any, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.kit.metrics import DB_STATEMENTS


class Sql:
    """Counted statements on one transaction's asyncpg connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def of(cls, session: AsyncSession) -> Sql:
        conn = await session.connection()
        fairy = await conn.get_raw_connection()
        adapted: Any = fairy.dbapi_connection
        # SQLAlchemy opens the transaction lazily on its first statement; open it now so
        # these statements belong to the unit of work and not to autocommit.
        if adapted._transaction is None:
            await adapted._start_transaction()
        return cls(cast(asyncpg.Connection, adapted._connection))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        DB_STATEMENTS.inc()
        return await self._conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        DB_STATEMENTS.inc()
        return await self._conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        DB_STATEMENTS.inc()
        return await self._conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        DB_STATEMENTS.inc()
        return await self._conn.execute(query, *args)
