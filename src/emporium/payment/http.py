"""Client for the gateway HTTP service (``emporium payment-gateway``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    GatewayServerError,
    GatewayUnreachable,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentNotFound,
    PaymentStateError,
    PaymentStatus,
    PaymentTransientError,
)


def payment_from_json(data: dict[str, Any]) -> GatewayPayment:
    return GatewayPayment(
        id=str(data["id"]),
        idempotency_key=str(data["idempotency_key"]),
        status=PaymentStatus(data["status"]),
        amount=Decimal(data["amount"]),
        currency=str(data["currency"]),
        card_last4=str(data["card_last4"]),
        decline_code=data.get("decline_code"),
        refunded_amount=Decimal(data.get("refunded_amount", "0")),
    )


def _path(payment_id: str, action: str) -> str:
    return f"/payments/{quote(payment_id, safe='')}/{action}"


class HttpGateway:
    """Speaks to the gateway service; network faults and 5xx become PaymentTransientError."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        *,
        name: str = "simulated",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any
    ) -> GatewayPayment | None:
        try:
            response = await self._client.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnreachable(f"gateway unreachable: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            raise PaymentTransientError(f"gateway timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise PaymentTransientError(f"gateway unreachable: {exc!r}") from exc
        if response.status_code in (502, 504):
            # A proxy's answer: the gateway behind it may still be at work on the request.
            raise PaymentTransientError(f"gateway error {response.status_code}")
        if response.status_code >= 500:
            raise GatewayServerError(f"gateway error {response.status_code}")
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise PaymentTransientError("gateway sent a malformed response") from exc
        if response.is_success:
            return payment_from_json(body)
        payment = payment_from_json(body["payment"]) if body.get("payment") else None
        error = str(body.get("error", ""))
        message = str(body.get("message", error))
        if response.status_code == 402:
            raise PaymentDeclined(error, payment)
        if response.status_code == 404:
            if missing_ok:
                return None
            raise PaymentNotFound(message)
        if error == "invalid_state":
            raise PaymentStateError(message, payment)
        if error == "idempotency_conflict":
            raise IdempotencyConflict(message)
        raise PaymentError(f"gateway rejected the request ({response.status_code}): {message}")

    async def _payment(self, method: str, path: str, **kwargs: Any) -> GatewayPayment:
        payment = await self._request(method, path, **kwargs)
        if payment is None:  # only missing_ok requests can get here
            raise PaymentNotFound(path)
        return payment

    async def authorize(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        return await self._create(idempotency_key, amount, currency, card, capture=False)

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        return await self._create(idempotency_key, amount, currency, card, capture=True)

    async def _create(
        self, idempotency_key: str, amount: Decimal, currency: str, card: Card, *, capture: bool
    ) -> GatewayPayment:
        body = {
            "amount": str(amount),
            "currency": currency,
            "card": {"number": card.number, "exp": card.exp, "cvc": card.cvc},
            "capture": capture,
        }
        headers = {"Idempotency-Key": idempotency_key}
        return await self._payment("POST", "/payments", json=body, headers=headers)

    async def capture(self, payment_id: str) -> GatewayPayment:
        return await self._payment("POST", _path(payment_id, "capture"))

    async def void(self, payment_id: str) -> GatewayPayment:
        return await self._payment("POST", _path(payment_id, "void"))

    async def refund(self, payment_id: str, amount: Decimal | None = None) -> GatewayPayment:
        body = {"amount": None if amount is None else str(amount)}
        return await self._payment("POST", _path(payment_id, "refund"), json=body)

    async def get_by_idempotency_key(self, idempotency_key: str) -> GatewayPayment | None:
        return await self._request(
            "GET", "/payments", params={"idempotency_key": idempotency_key}, missing_ok=True
        )
