"""The ``emporium`` command line."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable, Coroutine, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from emporium.accounts.cli import users_app
from emporium.config import Settings, get_settings
from emporium.payment.cli import payment_app

app = typer.Typer(help="Emporium: an open-source e-commerce platform.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(payment_app, name="payment-gateway")
console = Console()
T = TypeVar("T")


class SortChoice(StrEnum):
    relevance = "relevance"
    price_asc = "price_asc"
    price_desc = "price_desc"
    rating = "rating"
    newest = "newest"


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _run(fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    from emporium.kit.logging import configure_logging

    settings = get_settings()
    configure_logging("WARNING", json=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(fn(settings))


def _migrate(settings: Settings) -> None:
    from emporium.kit.db import ensure_database, resolve_database_url
    from emporium.kit.migrate import upgrade

    url = resolve_database_url(settings)
    asyncio.run(ensure_database(settings))
    upgrade(url)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _migrate(settings)
    console.print("[green]Database is up to date.")


# Server processes share this many PostgreSQL connections unless the operator sizes the
# pools: PostgreSQL allows 100 by default, and the rest is left to the command line.
CONNECTION_BUDGET = 90


def share_connections(settings: Settings, workers: int) -> None:
    """Size each process's pools (the ORM's with its overflow, the plain pool of the same
    size, the checkout pool and the outbox listener) so that ``workers`` of them fit."""
    from emporium.kit.db import orm_overflow

    if {"db_pool_size", "db_checkout_pool_size"} & settings.model_fields_set:
        return
    per = CONNECTION_BUDGET // workers
    size = max(2, min(settings.db_pool_size, per // 3))
    left = per - 2 * size - orm_overflow(size) - 1
    checkout = max(2, min(settings.db_checkout_pool_size, left))
    # Inherited by the worker processes, which read their settings afresh.
    os.environ["EMPORIUM_DB_POOL_SIZE"] = str(size)
    os.environ["EMPORIUM_DB_CHECKOUT_POOL_SIZE"] = str(checkout)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes")] = 1,
) -> None:
    """Serve the API (and storefront) with uvicorn."""
    import uvicorn

    from emporium.kit.embedded import forget_dead_processes, start_embedded_valkey
    from emporium.kit.metrics import MULTIPROC_ENV
    from emporium.kit.serving import ensure_free, exit_on_sigterm, serve_workers
    from emporium.main import create_app

    exit_on_sigterm()
    ensure_free(host, port)  # before the database starts, not after
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # The workers share their Prometheus metrics through files and /metrics sums
        # them; a directory set by the operator is theirs to wipe between runs.
        metrics_dir = (settings.data_dir / "metrics").resolve()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    if workers > 1:
        share_connections(settings, workers)
    _migrate(settings)
    console.print(f"Emporium on [bold]http://{host}:{port}[/bold]  (API docs: /docs)")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
        return
    # Start the embedded Valkey here so the worker processes all join the same one
    # (they join the embedded PostgreSQL on their own).
    valkey = None if settings.valkey_url else start_embedded_valkey(settings.valkey_dir)
    try:
        serve_workers("emporium.main:create_app", host, port, workers)
    finally:
        if valkey is not None:
            valkey.stop()
        if settings.database_url is None:
            forget_dead_processes(settings.pg_dir)


async def _reindex(settings: Settings, maker: Any) -> tuple[str, int]:
    from emporium.search.engine import SearchIndex
    from emporium.search.indexer import rebuild

    index = SearchIndex(settings.index_dir)
    try:
        with _progress() as progress:
            task = progress.add_task("Indexing products", total=None)
            return await rebuild(
                maker,
                index,
                on_total=lambda n: progress.update(task, total=n),
                on_progress=lambda n: progress.update(task, completed=n),
            )
    finally:
        index.close()


@app.command()
def worker(
    interval: Annotated[float, typer.Option(help="Seconds between rounds")] = 10.0,
) -> None:
    """Run background jobs: release expired reservations, settle stuck payments, and delete
    expired idempotency keys and delivered outbox events past their retention."""

    async def go(settings: Settings) -> None:
        import signal
        from datetime import timedelta

        from emporium.accounts.sessions import SessionStore
        from emporium.accounts.tasks import SessionLister
        from emporium.cart.tasks import ReservationReaper
        from emporium.checkout.tasks import IdempotencyKeyPurger
        from emporium.kit.cache import Cache
        from emporium.kit.db import open_database
        from emporium.kit.embedded import valkey_url_or_embedded
        from emporium.kit.outbox import OutboxPurger
        from emporium.order.tasks import PaymentReconciler
        from emporium.payment.factory import build_gateway

        engine, maker = await open_database(settings)
        # The reconciler asks the gateway about charges; the built-in one keeps them in
        # Valkey, the server's (joined when embedded).
        valkey_url, embedded = await valkey_url_or_embedded(
            settings.valkey_url, settings.valkey_dir
        )
        cache = Cache(valkey_url)
        gateway = build_gateway(settings, cache.client)
        lister = SessionLister(SessionStore(cache, settings.session_ttl_seconds))
        reaper = ReservationReaper(maker, interval_seconds=interval)
        purger = IdempotencyKeyPurger(maker, interval_seconds=interval * 6)
        outbox_purger = OutboxPurger(
            maker,
            retention=timedelta(hours=settings.outbox_retention_hours),
            interval_seconds=interval * 60,
        )
        reconciler = PaymentReconciler(
            maker,
            gateway,
            interval_seconds=interval * 3,
            stale_after=timedelta(seconds=settings.payment_timeout_seconds * 3),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reaper.start()
        reconciler.start()
        purger.start()
        outbox_purger.start()
        lister.start()
        console.print(
            "Worker running: reservation reaper, payment reconciler, idempotency-key purger"
            " and outbox purger (Ctrl+C stops)."
        )
        try:
            await stop.wait()
        finally:
            await reaper.stop()
            await reconciler.stop()
            await purger.stop()
            await outbox_purger.stop()
            await lister.stop()
            await gateway.aclose()
            await cache.close()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
            await engine.dispose()

    _run(go)


@app.command()
def reindex() -> None:
    """Rebuild the search index into a new generation and switch to it atomically."""

    async def go(settings: Settings) -> tuple[str, int]:
        from emporium.kit.db import open_database

        engine, maker = await open_database(settings)
        try:
            return await _reindex(settings, maker)
        finally:
            await engine.dispose()

    generation, count = _run(go)
    console.print(f"[green]Index {generation} is live with {count} products.")


@app.command()
def seed(
    products: Annotated[int, typer.Option(help="How many demo products")] = 5000,
    if_empty: Annotated[bool, typer.Option(help="Only seed when there are no products")] = False,
    random_seed: Annotated[int, typer.Option(help="Seed for the generator")] = 42,
) -> None:
    """Load a generated demo catalog (warehouses, sellers, products, stock, demo users)."""

    async def go(settings: Settings) -> bool:
        from emporium.catalog.loader import (
            catalog_is_empty,
            ensure_user,
            ensure_warehouses,
            load_records,
        )
        from emporium.catalog.sources import DEMO_WAREHOUSES, generate_demo
        from emporium.kit.db import open_database
        from emporium.models import Role, Seller

        engine, maker = await open_database(settings)
        try:
            async with maker() as session:
                if if_empty and not await catalog_is_empty(session):
                    return False
            async with maker() as session, session.begin():
                await ensure_warehouses(session, DEMO_WAREHOUSES)
            with _progress() as progress:
                task = progress.add_task("Seeding demo catalog", total=products)
                stats = await load_records(
                    maker,
                    generate_demo(products, seed=random_seed),
                    on_progress=lambda n: progress.advance(task, n),
                )
            async with maker() as session, session.begin():
                from sqlalchemy import select

                first_seller = await session.scalar(select(Seller.id).order_by(Seller.id).limit(1))
                await ensure_user(
                    session,
                    email="admin@emporium.local",
                    name="Admin",
                    role=Role.admin,
                    token=settings.admin_token,
                    seller_id=None,
                )
                if first_seller is not None:
                    await ensure_user(
                        session,
                        email="seller@emporium.local",
                        name="Demo seller",
                        role=Role.seller,
                        token=settings.seller_token,
                        seller_id=first_seller,
                    )
            console.print(
                f"Seeded {stats.products} products in {stats.categories} categories "
                f"from {stats.sellers} sellers ({stats.stock_rows} stock rows)."
            )
            await _reindex(settings, maker)
            return True
        finally:
            await engine.dispose()

    if _run(go):
        s = get_settings()
        console.print(
            f"Admin token: [bold]{s.admin_token}[/]  Seller token: [bold]{s.seller_token}[/]"
        )
    else:
        console.print("Catalog already has products; nothing seeded.")


@app.command("import-catalog")
def import_catalog(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    format: Annotated[Literal["bestbuy", "bigbasket"], typer.Option("--format", "-f")],
    reindex_after: Annotated[bool, typer.Option("--reindex/--no-reindex")] = True,
) -> None:
    """Import a real product catalog file (Best Buy JSON or BigBasket CSV, optionally .gz)."""

    async def go(settings: Settings) -> None:
        from emporium.catalog.loader import load_records
        from emporium.catalog.sources import count_records, read_catalog
        from emporium.kit.db import open_database

        engine, maker = await open_database(settings)
        try:
            total = count_records(path, format)

            def records() -> Iterator[Any]:
                for rec in read_catalog(path, format):
                    yield rec, ()

            with _progress() as progress:
                task = progress.add_task(f"Importing {path.name}", total=total)
                stats = await load_records(
                    maker, records(), on_progress=lambda n: progress.advance(task, n)
                )
            console.print(
                f"Imported {stats.products} products, {stats.categories} new categories, "
                f"{stats.sellers} new sellers."
            )
            if reindex_after:
                await _reindex(settings, maker)
        finally:
            await engine.dispose()

    try:
        _run(go)
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Search text")] = "",
    category: Annotated[str | None, typer.Option(help="Category id or slug")] = None,
    brand: Annotated[list[str] | None, typer.Option(help="Brand filter (repeatable)")] = None,
    sort: Annotated[SortChoice, typer.Option(help="Result order")] = SortChoice.relevance,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
) -> None:
    """Search the catalog and print results and facets (for checking relevance)."""

    async def go(settings: Settings) -> Any:
        from emporium.catalog.service import catalog
        from emporium.kit.db import open_database
        from emporium.search.engine import SearchIndex, SearchParams
        from emporium.search.service import SearchService

        engine, maker = await open_database(settings)
        try:
            async with maker() as session:
                cat_id = (
                    (await catalog.resolve_category(session, category)).id if category else None
                )
                params = SearchParams(
                    q=query,
                    category_id=cat_id,
                    brands=tuple(brand or ()),
                    sort=sort.value,
                    limit=limit,
                )
                return await SearchService(SearchIndex(settings.index_dir)).search(
                    session, params, 1
                )
        finally:
            await engine.dispose()

    result = _run(go)
    table = Table(
        title=f"{result.total} results for {query!r}"
        + (" (corrected)" if result.corrected else "")
        + f" — {result.backend}, {result.took_ms} ms"
    )
    for col in ("id", "title", "brand", "category", "price", "rating", "stock"):
        table.add_column(col)
    for item in result.items:
        table.add_row(
            str(item.id),
            item.title[:70],
            item.brand,
            item.category.name if item.category else "",
            str(item.price),
            f"{item.rating or ''}",
            "yes" if item.in_stock else "no",
        )
    console.print(table)
    f = result.facets
    console.print(
        "[bold]Categories:[/] " + ", ".join(f"{c.name} ({c.count})" for c in f.category[:10])
    )
    console.print("[bold]Brands:[/] " + ", ".join(f"{b.value} ({b.count})" for b in f.brand[:10]))
    console.print("[bold]Price:[/] " + ", ".join(f"{p.key} ({p.count})" for p in f.price_range))
    console.print("[bold]Rating:[/] " + ", ".join(f"{r.key} ({r.count})" for r in f.rating))
    console.print("[bold]In stock:[/] " + ", ".join(f"{s.value} ({s.count})" for s in f.in_stock))


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
