"""Placing orders and marking them paid, several checkouts per statement.

A server process lets a few statements of each kind run at once. A checkout arriving
while they are all under way waits as a coroutine, holding no connection, and rides the
next statement with every other that came meanwhile: one round trip, one commit and one
busy backend for several orders. PostgreSQL's CPU per checkout grows with the number of
backends at work, and each commit waits for its WAL flush; under load this is most of
the database's work per order. A checkout that finds a place free goes straight through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import structlog

from emporium.kit.db import transaction
from emporium.kit.gate import Gate, shared_call
from emporium.models import Order
from emporium.order.errors import OrderTotalTooLarge
from emporium.order.metrics import CHECKOUT_BATCH
from emporium.order.repository import Capture
from emporium.order.service import Checkout, Placement, orders

log = structlog.get_logger(__name__)

DEADLOCK_RETRIES = 3
# Checkouts served by one statement, besides the one that makes it.
RIDERS = 31
T = TypeVar("T")


@dataclass
class CheckoutBatches:
    pool: asyncpg.Pool
    place_calls: int = 1
    pay_calls: int = 1
    _placing: Gate = field(init=False)
    _paying: Gate = field(init=False)

    def __post_init__(self) -> None:
        self._placing = Gate(self.place_calls)
        self._paying = Gate(self.pay_calls)

    async def place(self, checkout: Checkout) -> Placement:
        """Claim the key and place the order, committing both or neither."""
        placed = await shared_call(self._placing, "place", checkout, self._place_many, RIDERS)
        if placed is None:
            # Refused within a shared call (nothing of it stayed): alone, it says why.
            placed = await self.place_one(checkout)
        assert isinstance(placed, Placement)
        return placed

    async def pay(self, capture: Capture) -> None:
        """Mark the order paid, answering its idempotency key in the same statement."""
        paid = await shared_call(self._paying, "pay", capture, self._pay_many, RIDERS)
        if paid is None:
            # No longer pending (cancelled meanwhile, say): alone, the statement says why.
            await self.pay_one(capture)

    async def place_one(self, checkout: Checkout) -> Placement:
        try:
            async with transaction(self.pool, single=True) as db:
                return await orders.place(db, checkout)
        except asyncpg.NumericValueOutOfRangeError:
            # Prices and quantities are bounded, their sums are not: a line or order total
            # past numeric(14, 2). Nothing was written: the cart and its holds are intact.
            raise OrderTotalTooLarge() from None

    async def pay_one(self, capture: Capture) -> Order:
        async def call() -> list[Order]:
            async with transaction(self.pool, single=True) as db:
                paid = await orders.mark_paid(
                    db,
                    capture.order_id,
                    capture.gateway_payment_id,
                    capture.actor,
                    at=capture.at,
                    answer=capture.answer,
                )
            return [paid]

        paid = await _retried(call, "pay", 1, alone=True)
        assert paid is not None
        return paid[0]

    async def _place_many(self, checkouts: list[Checkout]) -> list[object]:
        CHECKOUT_BATCH.labels("place").observe(len(checkouts))
        if len(checkouts) == 1:
            return await _each(checkouts, self.place_one)

        async def call() -> list[Placement | None]:
            async with transaction(self.pool, single=True) as db:
                return await orders.place_many(db, checkouts)

        placed = await _retried(call, "place", len(checkouts))
        # After any other failure each runs alone, outside this call, and meets its own.
        return list(placed) if placed is not None else [None] * len(checkouts)

    async def _pay_many(self, captures: list[Capture]) -> list[object]:
        CHECKOUT_BATCH.labels("pay").observe(len(captures))

        async def call() -> list[Order | None]:
            async with transaction(self.pool, single=True) as db:
                return await orders.pay_many(db, captures)

        paid = await _retried(call, "pay", len(captures), alone=len(captures) == 1)
        # One order's failure must not fail the others'.
        return list(paid) if paid is not None else await _each(captures, self.pay_one)


async def _retried(
    call: Callable[[], Awaitable[list[T]]], what: str, size: int, *, alone: bool = False
) -> list[T] | None:
    """``call``'s outcome, run again after a deadlock (PostgreSQL rolled it back, so that
    is safe); None after another database error, raised instead if ``alone``."""
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            return await call()
        except asyncpg.DeadlockDetectedError:
            if attempt == DEADLOCK_RETRIES:
                raise
            log.warning("checkout.deadlock_retry", statement=what, orders=size)
        except asyncpg.PostgresError:
            if alone:
                raise
            return None
    raise AssertionError("unreachable")


async def _each(items: list[T], one: Callable[[T], Awaitable[object]]) -> list[object]:
    """``one`` for each item in turn; an error becomes that item's outcome."""
    outcomes: list[object] = []
    for item in items:
        try:
            outcomes.append(await one(item))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes
