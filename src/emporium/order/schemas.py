from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import pycountry
from pydantic import AfterValidator, Field, StrictBool, StrictInt, StringConstraints

from emporium.kit.schemas import CleanStr, Schema, TrimmedStr


def iso_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased: carriers and tax rules key on it."""
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, such as US or GB")
    return code


Line = Annotated[TrimmedStr, StringConstraints(min_length=1, max_length=200)]


class ShippingAddress(Schema):
    name: Line
    line1: Line
    line2: Annotated[TrimmedStr, StringConstraints(max_length=200)] = ""
    city: Line
    postal_code: Annotated[TrimmedStr, StringConstraints(min_length=1, max_length=20)]
    country: Annotated[
        CleanStr,
        StringConstraints(max_length=10),
        AfterValidator(iso_country),
    ]


class OrderItem(Schema):
    product_id: int
    title: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class TimelineEntry(Schema):
    status: str
    note: str
    at: datetime


class ShipmentOut(Schema):
    warehouse_id: int
    tracking_number: str
    shipped_at: datetime
    delivered_at: datetime | None


class PaymentOut(Schema):
    status: str
    amount: Decimal
    card_last4: str | None
    error_code: str | None


class Order(Schema):
    id: int
    status: str
    currency: str
    subtotal: Decimal
    shipping_total: Decimal
    total: Decimal
    shipping_address: dict[str, str]
    items: list[OrderItem]
    timeline: list[TimelineEntry]
    shipments: list[ShipmentOut]
    payment: PaymentOut | None
    created_at: datetime
    paid_at: datetime | None


class OrderPage(Schema):
    items: list[Order]
    next_cursor: str | None


class FulfillmentLine(Schema):
    product_id: int
    title: str
    quantity: int


class FulfillmentWarehouse(Schema):
    """One warehouse's part of an order: one shipment (``POST /orders/{id}/ship``)."""

    warehouse_id: int
    lines: list[FulfillmentLine]
    shipment: ShipmentOut | None


class FulfillmentOrder(Schema):
    id: int
    status: str
    shipping_address: dict[str, str]
    created_at: datetime
    paid_at: datetime | None
    # The units taken from stock, by warehouse; empty until the order is paid.
    warehouses: list[FulfillmentWarehouse]


class FulfillmentPage(Schema):
    items: list[FulfillmentOrder]
    next_cursor: str | None


class ShipRequest(Schema):
    warehouse_id: StrictInt = Field(gt=0, le=2**63 - 1)
    tracking_number: Annotated[TrimmedStr, StringConstraints(min_length=1, max_length=100)]


class RefundRequest(Schema):
    restock: StrictBool = False


class AuditEntry(Schema):
    id: int
    action: str
    entity_type: str
    entity_id: str
    actor_user_id: int | None
    ip: str | None
    correlation_id: str | None
    old_values: dict[str, object] | None
    new_values: dict[str, object] | None
    created_at: datetime
