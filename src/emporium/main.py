"""The FastAPI application and its lifespan (database, cache, search index, outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Route

from emporium import __version__
from emporium.accounts.endpoints import router as accounts_router
from emporium.accounts.sessions import SessionStore
from emporium.accounts.tasks import SessionLister
from emporium.auth.service import UserCache
from emporium.cart.endpoints import direct_router as cart_direct_router
from emporium.cart.endpoints import install as install_cart
from emporium.cart.endpoints import router as cart_router
from emporium.cart.tasks import ReservationReaper
from emporium.catalog.endpoints import router as catalog_router
from emporium.checkout.endpoints import router as checkout_router
from emporium.checkout.idempotency import IdempotencyStore
from emporium.checkout.service import CheckoutService
from emporium.checkout.tasks import IdempotencyKeyPurger
from emporium.checkout.warmup import warm_connection
from emporium.config import Settings, get_settings
from emporium.health.endpoints import router as health_router
from emporium.inventory.endpoints import router as inventory_router
from emporium.kit.body_limit import BodyLimitMiddleware
from emporium.kit.cache import Cache
from emporium.kit.db import (
    create_engine,
    create_sessionmaker,
    ensure_database,
    resolve_database_url,
)
from emporium.kit.embedded import valkey_url_or_embedded
from emporium.kit.errors import install_error_handlers
from emporium.kit.leader import Leadership
from emporium.kit.logging import CorrelationIdMiddleware, configure_logging
from emporium.kit.metrics import PrometheusMiddleware, metrics_endpoint, process_exited
from emporium.kit.outbox import OutboxDispatcher, OutboxPurger, signal
from emporium.kit.routing import DirectApp
from emporium.kit.secrets import secret_key
from emporium.kit.sql import create_pool, to_libpq_url
from emporium.order.endpoints import router as order_router
from emporium.order.tasks import PaymentReconciler
from emporium.payment.factory import build_gateway
from emporium.search.endpoints import router as search_router
from emporium.search.engine import SearchIndex
from emporium.search.indexer import SearchIndexer, first_build
from emporium.search.service import SearchService

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
OPENAPI_TAGS = [
    {"name": name}
    for name in (
        "catalog",
        "inventory",
        "search",
        "accounts",
        "cart",
        "checkout",
        "orders",
        "health",
    )
]


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def create_app(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await startup(app, settings, background=background)
        try:
            yield
        finally:
            await shutdown(app)

    app = DirectApp(
        title="Emporium",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        openapi_tags=OPENAPI_TAGS,
    )
    app.state.settings = settings
    app.state.background = background
    app.state.user_cache = UserCache(settings.user_cache_seconds)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(PrometheusMiddleware)
    app.add_middleware(CorrelationIdMiddleware)
    # Add to cart and checkout are served directly (DirectApp); other requests are
    # matched against the routes in order, router by router. OPENAPI_TAGS orders the docs.
    app.include_direct(cart_direct_router, prefix="/api/v1")
    app.include_router(cart_router, prefix="/api/v1")
    install_cart(app)
    app.include_direct(checkout_router, prefix="/api/v1")
    app.include_router(catalog_router, prefix="/api/v1")
    app.include_router(inventory_router, prefix="/api/v1")
    app.include_router(search_router, prefix="/api/v1")
    app.include_router(accounts_router, prefix="/api/v1")
    app.include_router(order_router, prefix="/api/v1")
    app.include_router(health_router)
    app.router.routes.append(Route("/metrics", metrics_endpoint, include_in_schema=False))

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def root() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    @app.get("/api", include_in_schema=False)
    async def api_root() -> JSONResponse:
        return JSONResponse({"name": "Emporium", "version": __version__, "docs": "/docs"})

    return app


async def startup(app: FastAPI, settings: Settings, *, background: bool) -> None:
    configure_logging(settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = await asyncio.to_thread(resolve_database_url, settings)
    await ensure_database(settings)
    # The hot paths (add to cart, checkout, the caller's identity) use the plain pool;
    # everything else the ORM's, which needs fewer connections.
    engine = create_engine(
        url, max(settings.db_pool_size // 2, 2), pre_ping=settings.db_pool_pre_ping
    )
    maker = create_sessionmaker(engine)
    warm = warm_connection if settings.db_warm_up else None
    pool = await create_pool(to_libpq_url(url), settings.db_pool_size, warm=warm)
    app.state.pool = pool
    checkout_pool = await create_pool(to_libpq_url(url), settings.db_checkout_pool_size, warm=warm)
    app.state.checkout_pool = checkout_pool
    signal.bind(pool)

    valkey_url, embedded_valkey = await valkey_url_or_embedded(
        settings.valkey_url, settings.valkey_dir
    )
    cache = Cache(valkey_url)

    index = SearchIndex(settings.index_dir)
    search = SearchService(
        index,
        fail_max=settings.search_breaker_fail_max,
        reset_seconds=settings.search_breaker_reset_seconds,
    )
    indexer = SearchIndexer(index, maker, pool, cache)
    listen_dsn = to_libpq_url(url)
    dispatcher = OutboxDispatcher(
        pool,
        [indexer.handle],
        listen_dsn=listen_dsn,
        poll_seconds=settings.outbox_poll_seconds,
        linger_seconds=settings.outbox_linger_seconds,
    )
    app.state.engine = engine
    app.state.sessionmaker = maker
    app.state.cache = cache
    app.state.embedded_valkey = embedded_valkey
    app.state.search = search
    app.state.indexer = indexer
    app.state.dispatcher = dispatcher
    app.state.rebuild_task = None

    gateway = build_gateway(settings, cache.client)
    app.state.gateway = gateway
    app.state.checkout = CheckoutService(
        maker=maker,
        idempotency=IdempotencyStore(cache, secret_key(settings)),
        gateway=gateway,
        reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds),
        pool=checkout_pool,
        place_calls=settings.checkout_place_calls,
        pay_calls=settings.checkout_pay_calls,
    )
    app.state.reconciler = PaymentReconciler(
        maker,
        gateway,
        stale_after=timedelta(seconds=settings.payment_timeout_seconds * 3),
        cache=cache,
    )
    app.state.reaper = ReservationReaper(maker, cache=cache)
    app.state.session_lister = SessionLister(SessionStore(cache, settings.session_ttl_seconds))
    app.state.purger = IdempotencyKeyPurger(maker)
    app.state.outbox_purger = OutboxPurger(
        maker, retention=timedelta(hours=settings.outbox_retention_hours)
    )

    async def run_background_jobs() -> None:
        app.state.reconciler.start()
        app.state.reaper.start()
        app.state.session_lister.start()
        app.state.purger.start()
        app.state.outbox_purger.start()
        if not await asyncio.to_thread(index.exists):
            # Searches fall back to PostgreSQL until the first build is done.
            app.state.rebuild_task = asyncio.create_task(first_build(maker, index))
        dispatcher.start()

    app.state.leadership = Leadership(
        settings.data_dir.resolve() / "background.lock", run_background_jobs
    )
    if background:
        # Of several server processes on one data directory, one runs the jobs.
        if app.state.leadership.try_acquire():
            app.state.leadership.is_leader = True
            await run_background_jobs()
        else:
            app.state.leadership.start()
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, which would otherwise walk it again and again.
    gc.collect()
    gc.freeze()
    # At the default threshold (700 new objects) the young collections ran every few
    # requests, and each walked the objects of the requests then awaiting the database,
    # only to promote them; most are freed by their reference counts a little later.
    gc.set_threshold(50_000, 10, 10)
    log.info("emporium.started", version=__version__, embedded_db=settings.database_url is None)


async def shutdown(app: FastAPI) -> None:
    state = app.state

    async def step(name: str, action: Any) -> None:
        # One failing step must not keep the rest (and the embedded servers) running.
        try:
            result = action()
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("shutdown.step_failed", step=name)

    await step("leadership", state.leadership.stop)
    await step("reaper", state.reaper.stop)
    await step("session_lister", state.session_lister.stop)
    await step("purger", state.purger.stop)
    await step("outbox_purger", state.outbox_purger.stop)
    await step("reconciler", state.reconciler.stop)
    await step("gateway", state.gateway.aclose)
    await step("dispatcher", state.dispatcher.stop)
    if state.rebuild_task is not None:
        state.rebuild_task.cancel()
        with contextlib.suppress(BaseException):
            await state.rebuild_task
    await step("index", lambda: asyncio.to_thread(state.search.index.close))
    await step("cache", state.cache.close)
    if state.embedded_valkey is not None:
        await step("valkey", lambda: asyncio.to_thread(state.embedded_valkey.stop))
    await step("engine", state.engine.dispose)
    signal.unbind(state.pool)
    await step("pool", state.pool.close)
    await step("checkout_pool", state.checkout_pool.close)
    await step("metrics", process_exited)
