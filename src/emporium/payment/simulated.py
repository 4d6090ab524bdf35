"""A simulated card gateway with test cards, honouring idempotency keys itself.

Its payments live in a ledger (``payment/ledger.py``): in memory, or in Valkey for the
gateway built into the server."""

from __future__ import annotations

import asyncio
import re
import uuid
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from cachetools import LRUCache

from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    GatewayServerError,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentNotFound,
    PaymentStateError,
    PaymentStatus,
)
from emporium.payment.ledger import Ledger, MemoryLedger

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_INSUFFICIENT_FUNDS = "4000000000009995"
CARD_PROCESSING_ERROR = "4000000000000119"
CARD_HANG = "4000000000000259"

_DECLINES = {CARD_DECLINED: "card_declined", CARD_INSUFFICIENT_FUNDS: "insufficient_funds"}
_EXP = re.compile(r"^(0[1-9]|1[0-2])/(\d{2}|\d{4})$")
_CVC = re.compile(r"^\d{3}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def card_digits(number: str) -> str:
    return number.replace(" ", "").replace("-", "")


def luhn_valid(number: str) -> bool:
    if not (number.isascii() and number.isdigit()) or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def expiry_valid(exp: str, today: date) -> bool:
    m = _EXP.match(exp.strip())
    if not m:
        return False
    month, year = int(m.group(1)), int(m.group(2))
    if year < 100:
        year += 2000
    # A card is good through the last day of its expiry month.
    return (year, month) >= (today.year, today.month)


def card_problem(card: Card, today: date) -> str | None:
    """The decline code for unusable card details (Stripe's names), or None."""
    if not luhn_valid(card_digits(card.number)):
        return "incorrect_number"
    if not _EXP.match(card.exp.strip()):
        return "invalid_expiry"
    if not expiry_valid(card.exp, today):
        return "expired_card"
    if not _CVC.match(card.cvc):
        return "incorrect_cvc"
    return None


class SimulatedGateway:
    """In-process card gateway. ``charges`` counts distinct successful authorizations
    (each ``authorize`` or ``charge`` that took money or held it)."""

    name = "simulated"

    def __init__(
        self,
        *,
        hang_seconds: float = 60.0,
        latency: float = 0.0,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        ledger: Ledger | None = None,
    ) -> None:
        self.hang_seconds = hang_seconds
        self.latency = latency
        self._today = today
        self.ledger: Ledger = ledger or MemoryLedger()
        # Held only while some call uses them, so finished keys take no memory.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Keys this process recorded lately: a retry of one is answered from the ledger
        # without charging again, and a new key costs no read first (another process's
        # key is found when recording it).
        self._recorded: LRUCache[str, bool] = LRUCache(maxsize=100_000)
        self._recent: LRUCache[str, GatewayPayment] = LRUCache(maxsize=10_000)
        self.charges = 0
        self.calls: Counter[str] = Counter()

    async def authorize(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        self.calls["authorize"] += 1
        return await self._checked(idempotency_key, amount, currency, card, capture=False)

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        self.calls["charge"] += 1
        payment = await self._checked(idempotency_key, amount, currency, card, capture=True)
        if payment.status is PaymentStatus.authorized:  # authorized earlier under this key
            payment = await self.capture(payment.id)
        elif payment.status is not PaymentStatus.captured:
            raise PaymentStateError(f"the payment under this key is {payment.status}", payment)
        return payment

    async def _checked(
        self, idempotency_key: str, amount: Decimal, currency: str, card: Card, *, capture: bool
    ) -> GatewayPayment:
        if not idempotency_key:
            raise PaymentError("an idempotency key is required")
        if not amount.is_finite() or amount <= 0:
            raise PaymentError("amount must be positive")
        if not _CURRENCY.match(currency):
            raise PaymentError("currency must be a 3-letter ISO code")
        # One lock per key: concurrent retries of the same charge queue up, others don't.
        lock = self._locks.setdefault(idempotency_key, asyncio.Lock())
        async with lock:
            return await self._authorize(idempotency_key, amount, currency, card, capture)

    async def _authorize(
        self, idempotency_key: str, amount: Decimal, currency: str, card: Card, capture: bool
    ) -> GatewayPayment:
        digits = card_digits(card.number)
        if idempotency_key in self._recorded:
            existing = await self.ledger.by_key(idempotency_key)
            if existing is not None:
                return self._replay(existing, amount, currency, digits[-4:])
        await asyncio.sleep(self.latency)
        code = card_problem(card, self._today()) or _DECLINES.get(digits)
        if code is None and digits == CARD_PROCESSING_ERROR:
            raise GatewayServerError("processing_error")  # before anything is recorded
        if code is None and digits == CARD_HANG:
            # Slow but successful: exactly the case idempotency keys exist for.
            await asyncio.sleep(self.hang_seconds)
        # Approved: held, or taken at once by a charge.
        approved = PaymentStatus.captured if capture else PaymentStatus.authorized
        payment = GatewayPayment(
            id=f"pay_{uuid.uuid4().hex}",
            idempotency_key=idempotency_key,
            status=PaymentStatus.declined if code else approved,
            amount=amount,
            currency=currency,
            card_last4=digits[-4:],
            decline_code=code,
        )
        held = await self.ledger.add(payment)
        self._recorded[idempotency_key] = True
        self._recent[held.id] = held
        if held.id != payment.id:
            # Another process recorded the key first: its answer stands.
            return self._replay(held, amount, currency, digits[-4:])
        if code is not None:
            raise PaymentDeclined(code, payment)
        self.charges += 1
        return payment

    @staticmethod
    def _replay(
        payment: GatewayPayment, amount: Decimal, currency: str, last4: str
    ) -> GatewayPayment:
        if (payment.amount, payment.currency, payment.card_last4) != (amount, currency, last4):
            raise IdempotencyConflict("idempotency key reused with different parameters")
        if payment.decline_code is not None:
            raise PaymentDeclined(payment.decline_code, payment)
        return payment

    async def _get(self, payment_id: str) -> GatewayPayment:
        payment = await self.ledger.by_id(payment_id)
        if payment is None:
            raise PaymentNotFound(payment_id)
        return payment

    async def _change(
        self, payment_id: str, change: Callable[[GatewayPayment], GatewayPayment]
    ) -> GatewayPayment:
        """Apply ``change`` to the payment as it is now.

        It starts from this process's last copy, if any (capturing right after
        authorizing then takes one write): the ledger swaps only from the state it
        holds, so a copy another process has overtaken is read again, as is one that
        ``change`` leaves alone or refuses."""
        p = self._recent.get(payment_id)
        fresh = p is None
        while True:
            if p is None:
                p, fresh = await self._get(payment_id), True
            try:
                new = change(p)
            except PaymentError:
                if fresh:
                    raise
                p = None
                continue
            if new == p:
                if fresh:
                    return new
                p = None
                continue
            if await self.ledger.swap(p, new):
                self._recent[payment_id] = new
                return new
            p = None

    async def capture(self, payment_id: str) -> GatewayPayment:
        self.calls["capture"] += 1
        await asyncio.sleep(self.latency)

        def capture(p: GatewayPayment) -> GatewayPayment:
            if p.status is PaymentStatus.captured:
                return p  # a retried capture is a no-op
            if p.status is not PaymentStatus.authorized:
                raise PaymentStateError(f"cannot capture a {p.status} payment", p)
            return replace(p, status=PaymentStatus.captured)

        return await self._change(payment_id, capture)

    async def void(self, payment_id: str) -> GatewayPayment:
        self.calls["void"] += 1
        await asyncio.sleep(self.latency)

        def void(p: GatewayPayment) -> GatewayPayment:
            if p.status is PaymentStatus.voided:
                return p
            if p.status is not PaymentStatus.authorized:
                raise PaymentStateError(f"cannot void a {p.status} payment", p)
            return replace(p, status=PaymentStatus.voided)

        return await self._change(payment_id, void)

    async def refund(self, payment_id: str, amount: Decimal | None = None) -> GatewayPayment:
        self.calls["refund"] += 1
        await asyncio.sleep(self.latency)

        def refund(p: GatewayPayment) -> GatewayPayment:
            if amount is None and p.status is PaymentStatus.refunded:
                return p  # a retried full refund is a no-op
            if p.status is not PaymentStatus.captured:
                raise PaymentStateError(f"cannot refund a {p.status} payment", p)
            remaining = p.amount - p.refunded_amount
            part = remaining if amount is None else amount
            if not part.is_finite() or part <= 0:
                raise PaymentError("refund amount must be positive")
            if part > remaining:
                raise PaymentStateError(f"refund of {part} exceeds the {remaining} left", p)
            refunded = p.refunded_amount + part
            status = PaymentStatus.refunded if refunded == p.amount else PaymentStatus.captured
            return replace(p, status=status, refunded_amount=refunded)

        return await self._change(payment_id, refund)

    async def get_by_idempotency_key(self, idempotency_key: str) -> GatewayPayment | None:
        self.calls["get_by_idempotency_key"] += 1
        await asyncio.sleep(self.latency)
        return await self.ledger.by_key(idempotency_key)
