"""The payment gateway interface: what checkout codes against, whatever gateway is behind it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol


class PaymentStatus(StrEnum):
    authorized = "authorized"
    captured = "captured"
    voided = "voided"
    refunded = "refunded"
    declined = "declined"


@dataclass(frozen=True)
class Card:
    number: str
    exp: str  # "MM/YY" or "MM/YYYY"
    cvc: str


@dataclass(frozen=True)
class GatewayPayment:
    id: str
    idempotency_key: str
    status: PaymentStatus
    amount: Decimal
    currency: str
    card_last4: str
    decline_code: str | None
    # Partial refunds keep the payment captured; this says how much went back.
    refunded_amount: Decimal = Decimal("0")


class PaymentError(Exception):
    """Base of every payment failure."""


class PaymentDeclined(PaymentError):
    """The card was refused: a final answer, never retried, never a breaker failure."""

    def __init__(self, code: str, payment: GatewayPayment | None = None) -> None:
        super().__init__(code)
        # "card_declined", "insufficient_funds", or for unusable details "incorrect_number",
        # "invalid_expiry", "expired_card", "incorrect_cvc"
        self.code = code
        self.payment = payment


class PaymentUnavailable(PaymentError):
    """The gateway cannot be reached: breaker open, or retries exhausted."""


class PaymentNotAttempted(PaymentUnavailable):
    """The gateway cannot be reached, and no attempt got to it: nothing was charged."""


class PaymentErrored(PaymentUnavailable):
    """Every attempt that got to the gateway was answered with a server error: none is
    still under way there, so the payment under the key, looked up now, is final."""


class PaymentTransientError(PaymentError):
    """A processing error, timeout or network fault that a retry may cure."""


class GatewayUnreachable(PaymentTransientError):
    """The connection failed before the request was sent."""


class GatewayServerError(PaymentTransientError):
    """The gateway answered with an error of its own (a 5xx): the request is over there."""


class PaymentNotFound(PaymentError):
    """No payment with that id."""


class PaymentStateError(PaymentError):
    """The operation is not allowed in the payment's current status (e.g. refund a void)."""

    def __init__(self, message: str, payment: GatewayPayment | None = None) -> None:
        super().__init__(message)
        self.payment = payment


class IdempotencyConflict(PaymentError):
    """An idempotency key was reused for a different amount or currency."""


class PaymentGateway(Protocol):
    name: str

    async def authorize(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment: ...

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        """Authorize and capture in one call (a sale). A key that an authorization
        already holds gets that payment captured; one that a charge holds, its payment."""
        ...

    async def capture(self, payment_id: str) -> GatewayPayment: ...

    async def void(self, payment_id: str) -> GatewayPayment: ...

    async def refund(self, payment_id: str, amount: Decimal | None = None) -> GatewayPayment: ...

    async def get_by_idempotency_key(self, idempotency_key: str) -> GatewayPayment | None: ...
