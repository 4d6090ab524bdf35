"""Where the simulated gateway keeps its payments.

In memory for a gateway of its own (tests, ``emporium payment-gateway``); in Valkey for
the gateway built into the server, so that every server process sees the same payments
and a refund still finds its charge after a restart. They stand in for the gateway's
own records: nothing of Emporium's refers to them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import Protocol, cast

import valkey.asyncio as valkey_async
from valkey.exceptions import ValkeyError

from emporium.payment.gateway import GatewayPayment, PaymentStatus, PaymentTransientError


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


# Seven days: long enough to cancel or refund an order placed on the demo shop; a real
# gateway keeps its records, this simulation only as long as anyone will ask.
RETENTION_SECONDS = 7 * 24 * 3600
PREFIX = "emporium:simgw:"

# Record a new payment unless its key is taken: the id holding the key, or nothing.
_ADD = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[2], ARGV[2])
return false
"""
# Change status and refunded amount only from the state the caller read.
_SWAP = """
local now = redis.call('HMGET', KEYS[1], 'status', 'refunded_amount')
if now[1] ~= ARGV[1] or now[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'refunded_amount', ARGV[4])
return 1
"""


def _fields(p: GatewayPayment) -> list[str]:
    return [
        "id", p.id, "idempotency_key", p.idempotency_key, "status", p.status.value,
        "amount", str(p.amount), "currency", p.currency, "card_last4", p.card_last4,
        "decline_code", p.decline_code or "", "refunded_amount", str(p.refunded_amount),
    ]  # fmt: skip


def _payment(raw: dict[bytes, bytes]) -> GatewayPayment | None:
    if not raw:
        return None
    f = {k.decode(): v.decode() for k, v in raw.items()}
    return GatewayPayment(
        id=f["id"],
        idempotency_key=f["idempotency_key"],
        status=PaymentStatus(f["status"]),
        amount=Decimal(f["amount"]),
        currency=f["currency"],
        card_last4=f["card_last4"],
        decline_code=f["decline_code"] or None,
        refunded_amount=Decimal(f["refunded_amount"]),
    )


class ValkeyLedger:
    """Payments as Valkey hashes, shared by every server process.

    The embedded Valkey saves its data at shutdown, so a restart keeps them; each
    payment lives ``RETENTION_SECONDS``. Valkey answers in a round trip with no write to
    PostgreSQL, so the simulation costs the checkout little. A Valkey that cannot be
    reached is a transient payment error: retried, and counted by the breaker."""

    def __init__(self, client: valkey_async.Valkey) -> None:
        self.client = client
        self._add = client.register_script(_ADD)
        self._swap = client.register_script(_SWAP)

    @staticmethod
    def _pay(payment_id: str) -> str:
        return f"{PREFIX}pay:{payment_id}"

    @staticmethod
    def _key(idempotency_key: str) -> str:
        return f"{PREFIX}key:{idempotency_key}"

    async def by_id(self, payment_id: str) -> GatewayPayment | None:
        async with _transient():
            # valkey-py types its hash commands for both clients, sync and async.
            raw = await cast(
                Awaitable[dict[bytes, bytes]], self.client.hgetall(self._pay(payment_id))
            )
        return _payment(raw)

    async def by_key(self, idempotency_key: str) -> GatewayPayment | None:
        async with _transient():
            held = await self.client.get(self._key(idempotency_key))
        return None if held is None else await self.by_id(held.decode())

    async def add(self, payment: GatewayPayment) -> GatewayPayment:
        keys = [self._key(payment.idempotency_key), self._pay(payment.id)]
        async with _transient():
            held = await self._add(
                keys=keys, args=[payment.id, RETENTION_SECONDS, *_fields(payment)]
            )
        if held is None:
            return payment
        found = await self.by_id(held.decode())
        if found is None:  # the key outlived its payment by a moment: expired together
            raise PaymentTransientError("simulated payment expired while read")
        return found

    async def swap(self, old: GatewayPayment, new: GatewayPayment) -> bool:
        args = [
            old.status.value,
            str(old.refunded_amount),
            new.status.value,
            str(new.refunded_amount),
        ]
        async with _transient():
            return bool(await self._swap(keys=[self._pay(old.id)], args=args))


@contextlib.asynccontextmanager
async def _transient() -> AsyncIterator[None]:
    try:
        yield
    except (ValkeyError, OSError) as exc:
        raise PaymentTransientError(f"simulated gateway store: {exc}") from exc
