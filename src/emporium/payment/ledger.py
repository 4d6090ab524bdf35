"""Where the simulated gateway keeps its payments.

In memory for a gateway of its own (tests, ``emporium payment-gateway``); in PostgreSQL
for the gateway built into the server, so that every server process sees the same
payments and a refund still finds its charge after a restart. The table stands in for
the gateway's own records: nothing of Emporium's refers to it.
"""

from __future__ import annotations

from typing import Any, Protocol

import asyncpg

from emporium.payment.gateway import GatewayPayment, PaymentStatus


class Ledger(Protocol):
    async def by_id(self, payment_id: str) -> GatewayPayment | None: ...

    async def by_key(self, idempotency_key: str) -> GatewayPayment | None: ...

    async def add(self, payment: GatewayPayment) -> GatewayPayment:
        """Record a new payment; if its key was taken meanwhile, the payment holding it."""
        ...

    async def swap(self, old: GatewayPayment, new: GatewayPayment) -> bool:
        """Replace ``old`` with ``new`` unless it changed since it was read."""
        ...


class MemoryLedger:
    def __init__(self) -> None:
        self._payments: dict[str, GatewayPayment] = {}
        self._by_key: dict[str, str] = {}

    async def by_id(self, payment_id: str) -> GatewayPayment | None:
        return self._payments.get(payment_id)

    async def by_key(self, idempotency_key: str) -> GatewayPayment | None:
        payment_id = self._by_key.get(idempotency_key)
        return None if payment_id is None else self._payments[payment_id]

    async def add(self, payment: GatewayPayment) -> GatewayPayment:
        held = self._by_key.setdefault(payment.idempotency_key, payment.id)
        if held != payment.id:
            return self._payments[held]
        self._payments[payment.id] = payment
        return payment

    async def swap(self, old: GatewayPayment, new: GatewayPayment) -> bool:
        if self._payments.get(old.id) != old:
            return False
        self._payments[new.id] = new
        return True


_COLUMNS = (
    "id, idempotency_key, status, amount, currency, card_last4, decline_code, refunded_amount"
)


def _payment(row: asyncpg.Record | None) -> GatewayPayment | None:
    if row is None:
        return None
    return GatewayPayment(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        status=PaymentStatus(row["status"]),
        amount=row["amount"],
        currency=row["currency"],
        card_last4=row["card_last4"],
        decline_code=row["decline_code"],
        refunded_amount=row["refunded_amount"],
    )


class PgLedger:
    """The ``simulated_payments`` table, through a plain asyncpg pool (autocommit: the
    gateway's writes never join the caller's transaction)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _one(self, sql: str, *args: Any) -> GatewayPayment | None:
        return _payment(await self.pool.fetchrow(sql, *args))

    async def by_id(self, payment_id: str) -> GatewayPayment | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM simulated_payments WHERE id = $1", payment_id
        )

    async def by_key(self, idempotency_key: str) -> GatewayPayment | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM simulated_payments WHERE idempotency_key = $1",
            idempotency_key,
        )

    async def add(self, payment: GatewayPayment) -> GatewayPayment:
        p = payment
        added = await self._one(
            f"INSERT INTO simulated_payments ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            f" ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
            p.id, p.idempotency_key, p.status.value, p.amount, p.currency, p.card_last4,
            p.decline_code, p.refunded_amount,
        )  # fmt: skip
        if added is not None:
            return added
        held = await self.by_key(p.idempotency_key)
        assert held is not None  # keys are never deleted
        return held

    async def swap(self, old: GatewayPayment, new: GatewayPayment) -> bool:
        done = await self.pool.fetchval(
            "UPDATE simulated_payments SET status = $4, refunded_amount = $5, updated_at = now()"
            " WHERE id = $1 AND status = $2 AND refunded_amount = $3 RETURNING true",
            old.id, old.status.value, old.refunded_amount, new.status.value, new.refunded_amount,
        )  # fmt: skip
        return bool(done)
