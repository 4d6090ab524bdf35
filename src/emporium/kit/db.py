"""Engine, sessions and the request-scoped unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, NewType, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction
from fastapi import Depends, Request
from sqlalchemy import BigInteger, ColumnElement, SQLColumnExpression, any_, bindparam, event, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from emporium.config import Settings
from emporium.kit import jsoncodec
from emporium.kit.embedded import (
    DEFAULT_DB_NAME,
    embedded_postgres_url,
    start_embedded_postgres,
    to_asyncpg_url,
)
from emporium.kit.metrics import DB_STATEMENTS
from emporium.kit.pool import FairPool
from emporium.kit.sql import Sql, notify

# Reads take the read type so they can later be routed to a replica.
AsyncReadSession = NewType("AsyncReadSession", AsyncSession)

AfterCommit = Callable[[], Awaitable[None]]
_after_commit: ContextVar[list[AfterCommit] | None] = ContextVar("after_commit", default=None)


def id_in(column: SQLColumnExpression[int], ids: Iterable[int]) -> ColumnElement[bool]:
    """``column = ANY(:ids)`` with the ids as one array parameter.

    ``column.in_(ids)`` renders one parameter per id, so each list length is a new
    statement to compile in SQLAlchemy and to prepare in PostgreSQL.
    """
    return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return to_asyncpg_url(settings.database_url)
    return to_asyncpg_url(embedded_postgres_url(settings.pg_dir, DEFAULT_DB_NAME))


async def ensure_database(settings: Settings) -> None:
    """Create the embedded server's application database on first use."""
    if settings.database_url:
        return
    server = start_embedded_postgres(settings.pg_dir)
    conn = await asyncpg.connect(server.get_uri("postgres"))
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", DEFAULT_DB_NAME
        )
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DEFAULT_DB_NAME}"')
    finally:
        await conn.close()


async def open_database(settings: Settings) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """Engine and sessions for CLI commands and workers (starting embedded PostgreSQL if needed)."""
    import asyncio

    url = await asyncio.to_thread(resolve_database_url, settings)
    await ensure_database(settings)
    engine = create_engine(url, settings.db_pool_size, pre_ping=settings.db_pool_pre_ping)
    return engine, create_sessionmaker(engine)


def orm_overflow(pool_size: int) -> int:
    """Connections the ORM's pool may open beyond ``pool_size`` under a burst."""
    return max(pool_size // 4, 2)


def create_engine(url: str, pool_size: int = 10, *, pre_ping: bool = False) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=orm_overflow(pool_size),
        pool_pre_ping=pre_ping,
        json_serializer=jsoncodec.dumps,
        json_deserializer=jsoncodec.loads,
    )
    event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
    return engine


def _count_statement(*_: object) -> None:
    DB_STATEMENTS.inc()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(callback: AfterCommit, *, once: bool = False) -> None:
    """Run ``callback`` once the current unit of work has committed; dropped on rollback.

    ``once``: not again if this unit of work already has it.
    """
    pending = _after_commit.get()
    if pending is None:
        raise RuntimeError("after_commit() called outside a unit of work")
    if not (once and callback in pending):
        pending.append(callback)


async def _run_after_commit(callbacks: list[AfterCommit]) -> None:
    import structlog

    for callback in callbacks:
        try:
            await callback()
        except Exception:  # a failed side effect must not turn a committed write into an error
            structlog.get_logger(__name__).exception("after_commit.failed")


@asynccontextmanager
async def unit_of_work_callbacks() -> AsyncIterator[Callable[[], None]]:
    """Collect after-commit callbacks for the unit of work inside; run them if it committed.

    The body calls the yielded function once its transaction has committed.
    """
    token = _after_commit.set([])
    done = False

    def committed() -> None:
        nonlocal done
        done = True

    try:
        yield committed
        callbacks = _after_commit.get() or []
    finally:
        _after_commit.reset(token)
    if done:
        await _run_after_commit(callbacks)


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit on success, roll back on error."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    token = _after_commit.set([])
    try:
        async with maker() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()
        callbacks = _after_commit.get() or []
    finally:
        _after_commit.reset(token)
    await _run_after_commit(callbacks)


async def get_read_session(
    session: Annotated[AsyncSession, Depends(get_db_session, scope="function")],
) -> AsyncReadSession:
    # One connection per request; the read type marks code that could move to a replica.
    return AsyncReadSession(session)


class UnitOfWork:
    """A worker-side unit of work with the same commit/after-commit rules as a request."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker

    async def __aenter__(self) -> AsyncSession:
        self._token = _after_commit.set([])
        self._session = self._maker()
        return self._session

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                await self._session.commit()
            else:
                await self._session.rollback()
            callbacks = _after_commit.get() or []
        finally:
            await self._session.close()
            _after_commit.reset(self._token)
        if exc_type is None:
            await _run_after_commit(callbacks)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


# scope="function": commit before the response is sent, so a client that got a 2xx
# can read its own write.
SessionDep = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
ReadSessionDep = Annotated[AsyncReadSession, Depends(get_read_session)]


class _PoolTx(Sql):
    """A unit of work on a plain-pool connection; its transaction opens on ``begin``.

    Until then it may give its connection back (``pause``) and take another on its next
    statement: a request waiting its turn for a product then holds no connection that
    the requests ahead of it need.
    """

    __slots__ = ("_pool", "tx")

    def __init__(self, pool: asyncpg.Pool, conn: PoolConnectionProxy[asyncpg.Record]) -> None:
        super().__init__(conn)
        self._pool = pool
        self.tx: Transaction | None = None

    async def _connection(self) -> asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]:
        if self._conn is None:
            # Back from a pause: this unit of work has waited its turn once already.
            pool = self._pool
            again = pool.acquire_again() if isinstance(pool, FairPool) else pool.acquire()
            self._conn = await again
        return self._conn

    async def pause(self) -> None:
        if self.tx is None:
            await self.close()

    async def begin(self) -> None:
        if self.tx is None:
            tx = (await self._connection()).transaction()
            await tx.start()
            self.tx = tx
            notify("BEGIN")

    async def close(self) -> None:
        if self._conn is not None:
            # Only ever a connection of this pool (the constructor's, or _connection's).
            conn = cast("PoolConnectionProxy[asyncpg.Record]", self._conn)
            self._conn = None
            await self._pool.release(conn)


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool, *, single: bool = False, lazy: bool = False
) -> AsyncIterator[Sql]:
    """A unit of work on the plain pool; ``single``: one statement, no BEGIN/COMMIT;
    ``lazy``: the transaction opens at :meth:`Sql.begin`, statements before it run alone.

    Commits on success and rolls back on error; callbacks registered with
    :func:`after_commit` run once it has committed.
    """
    async with unit_of_work_callbacks() as committed:
        if single:
            async with pool.acquire() as conn:
                yield Sql(conn)
        else:
            db = _PoolTx(pool, await pool.acquire())
            try:
                if not lazy:
                    await db.begin()
                try:
                    yield db
                except BaseException:
                    if db.tx is not None:
                        await db.tx.rollback()
                        notify("ROLLBACK")
                    raise
                if db.tx is not None:
                    await db.tx.commit()
                    notify("COMMIT")
            finally:
                await db.close()
        committed()
