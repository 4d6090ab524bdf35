from __future__ import annotations

from fastapi import status

from emporium.kit.errors import AppError, NotFound


class WarehouseNotFound(NotFound):
    code = "warehouse_not_found"


class StockBelowReserved(AppError):
    status_code = status.HTTP_409_CONFLICT
    code = "stock_below_reserved"
