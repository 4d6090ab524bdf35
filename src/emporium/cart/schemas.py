from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import Field, StrictInt

from emporium.kit.schemas import Schema

MAX_LINE_QUANTITY = 1000


class CartItemAdd(Schema):
    product_id: StrictInt = Field(gt=0, le=2**63 - 1)
    quantity: StrictInt = Field(ge=1, le=MAX_LINE_QUANTITY)


class CartItemUpdate(Schema):
    quantity: StrictInt = Field(ge=1, le=MAX_LINE_QUANTITY)


class CartLine(Schema):
    product_id: int
    title: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal
    # The earliest expiry among the line's reservations.
    reserved_until: datetime | None
    # Units of the product still free to add (stock not held by anyone); 0 once withdrawn.
    available: int


class CartView(Schema):
    lines: list[CartLine]
    subtotal: Decimal
    item_count: int
