from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from emporium.auth.dependencies import SECURED, checkout_caller
from emporium.checkout.idempotency import IdempotencyInProgress, IdempotencyKeyReused
from emporium.checkout.schemas import CheckoutRequest
from emporium.checkout.service import CheckoutService
from emporium.kit import jsoncodec
from emporium.kit.errors import Unauthorized
from emporium.kit.routing import DirectRoute, caller_first
from emporium.kit.schemas import CleanStr
from emporium.models import User
from emporium.order.schemas import Order
from emporium.order.service import CartEmpty
from emporium.payment.errors import PaymentUnavailableError

# The busiest endpoint, on a DirectRoute (kit/routing.py).
router = APIRouter(tags=["checkout"], route_class=DirectRoute)


@router.post(
    "/checkout",
    status_code=201,
    response_model=Order,
    responses={
        **Unauthorized.responses(),
        **CartEmpty.responses(),
        **IdempotencyInProgress.responses(),
        **IdempotencyKeyReused.responses(),
        **PaymentUnavailableError.responses(),
        402: {"description": "payment_declined"},
    },
    openapi_extra=SECURED,
)
@caller_first(checkout_caller)
async def checkout(
    request: Request,
    body: CheckoutRequest,
    idempotency_key: Annotated[
        CleanStr, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ],
) -> Response:
    """Place an order from the cart and pay for it. Safe to retry with the same key."""
    # Checkout runs its own short transactions: no connection is held during payment.
    user: User = request.state.caller
    service: CheckoutService = request.app.state.checkout
    response = await service.checkout(user, idempotency_key, body)
    return Response(
        jsoncodec.dumps_bytes(response.body),
        status_code=response.status,
        media_type="application/json",
    )
