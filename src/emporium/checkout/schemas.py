from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from emporium.kit.schemas import CleanStr, Schema
from emporium.order.schemas import ShippingAddress


class CardIn(Schema):
    card_number: Annotated[CleanStr, StringConstraints(pattern=r"^[0-9]{12,19}$")]
    exp: Annotated[CleanStr, StringConstraints(pattern=r"^(0[1-9]|1[0-2])/([0-9]{2}|[0-9]{4})$")]
    cvc: Annotated[CleanStr, StringConstraints(pattern=r"^[0-9]{3,4}$")]


class CheckoutRequest(Schema):
    shipping_address: ShippingAddress
    payment: CardIn
