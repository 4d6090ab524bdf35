"""The simulated gateway as an HTTP service, so that network faults in front of it are real.

JSON throughout; amounts are decimal strings. Declines answer 402, invalid transitions 409,
unknown payments 404, transient processing errors 500.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentNotFound,
    PaymentStateError,
    PaymentTransientError,
)
from emporium.payment.simulated import SimulatedGateway


class CardIn(BaseModel):
    number: str = Field(max_length=64)
    exp: str = Field(max_length=16)
    cvc: str = Field(max_length=8)


class AuthorizeIn(BaseModel):
    amount: Decimal
    currency: str = Field(max_length=3)
    card: CardIn
    idempotency_key: str | None = Field(default=None, max_length=255)
    # Capture at once (a sale) instead of holding the amount.
    capture: bool = False


class RefundIn(BaseModel):
    amount: Decimal | None = None


def payment_json(p: GatewayPayment) -> dict[str, Any]:
    return {
        "id": p.id,
        "idempotency_key": p.idempotency_key,
        "status": p.status.value,
        "amount": str(p.amount),
        "currency": p.currency,
        "card_last4": p.card_last4,
        "decline_code": p.decline_code,
        "refunded_amount": str(p.refunded_amount),
    }


def _error(status: int, error: str, message: str, payment: GatewayPayment | None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if payment is not None:
        body["payment"] = payment_json(payment)
    return JSONResponse(body, status_code=status)


def create_gateway_app(gateway: SimulatedGateway | None = None) -> FastAPI:
    gw = gateway or SimulatedGateway()
    app = FastAPI(title="Emporium simulated payment gateway")
    app.state.gateway = gw

    @app.exception_handler(PaymentError)
    async def _payment_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, PaymentDeclined):
            return _error(402, exc.code, str(exc), exc.payment)
        if isinstance(exc, PaymentNotFound):
            return _error(404, "not_found", str(exc), None)
        if isinstance(exc, PaymentStateError):
            return _error(409, "invalid_state", str(exc), exc.payment)
        if isinstance(exc, IdempotencyConflict):
            return _error(409, "idempotency_conflict", str(exc), None)
        if isinstance(exc, PaymentTransientError):
            return _error(500, "processing_error", str(exc), None)
        return _error(400, "invalid_request", str(exc), None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_simulator/stats")
    async def stats() -> dict[str, Any]:
        return {"charges": gw.charges, "calls": dict(gw.calls)}

    @app.post("/payments")
    async def authorize(
        body: AuthorizeIn,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> Any:
        if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
            raise PaymentError("Idempotency-Key header and body field differ")
        key = idempotency_key or body.idempotency_key or ""
        card = Card(number=body.card.number, exp=body.card.exp, cvc=body.card.cvc)
        create = gw.charge if body.capture else gw.authorize
        payment = await create(
            idempotency_key=key, amount=body.amount, currency=body.currency, card=card
        )
        return payment_json(payment)

    @app.get("/payments")
    async def by_idempotency_key(idempotency_key: str) -> Any:
        payment = await gw.get_by_idempotency_key(idempotency_key)
        if payment is None:
            return _error(404, "not_found", idempotency_key, None)
        return payment_json(payment)

    @app.post("/payments/{payment_id}/capture")
    async def capture(payment_id: str) -> Any:
        return payment_json(await gw.capture(payment_id))

    @app.post("/payments/{payment_id}/void")
    async def void(payment_id: str) -> Any:
        return payment_json(await gw.void(payment_id))

    @app.post("/payments/{payment_id}/refund")
    async def refund(payment_id: str, body: RefundIn | None = None) -> Any:
        amount = body.amount if body is not None else None
        return payment_json(await gw.refund(payment_id, amount))

    return app
