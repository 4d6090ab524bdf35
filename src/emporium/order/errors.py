from __future__ import annotations

from decimal import Decimal

from fastapi import status

from emporium.kit.errors import AppError, Conflict, InvalidInput, NotFound

# Orders keep their money in numeric(14, 2) columns.
MAX_ORDER_TOTAL = Decimal("999999999999.99")


class OrderNotFound(NotFound):
    code = "order_not_found"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NotOrderSeller(AppError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "not_order_seller"


class NothingToShip(Conflict):
    code = "nothing_to_ship"


class OrderTotalTooLarge(InvalidInput):
    code = "order_total_too_large"

    def __init__(self) -> None:
        super().__init__(
            "the cart's total is more than one order can hold; split it into several orders",
            limit=str(MAX_ORDER_TOTAL),
        )
