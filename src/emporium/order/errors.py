from __future__ import annotations

from fastapi import status

from emporium.kit.errors import AppError, Conflict, NotFound


class OrderNotFound(NotFound):
    code = "order_not_found"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NotOrderSeller(AppError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "not_order_seller"


class NothingToShip(Conflict):
    code = "nothing_to_ship"
