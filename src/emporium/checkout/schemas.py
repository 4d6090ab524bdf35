from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from emporium.kit.schemas import Schema
from emporium.order.schemas import ShippingAddress

# [0-9], not \d: other scripts' digits are not a card's.
_NUMBER = re.compile(r"[0-9]{12,19}")
_EXPIRY = re.compile(r"(0?[1-9]|1[0-2])/([0-9]{2}|[0-9]{4})")
_CVC = re.compile(r"[0-9]{3,4}")


def card_number(value: str) -> str:
    # Typed as printed on the card, in groups: the digits are the number.
    digits = value.replace(" ", "").replace("-", "")
    if not _NUMBER.fullmatch(digits):
        raise PydanticCustomError("card_number_invalid", "card number must be 12–19 digits")
    return digits


def card_expiry(value: str) -> str:
    """MM/YY or MM/YYYY, the month's leading zero optional; given back with it."""
    found = _EXPIRY.fullmatch(value.strip())
    if found is None:
        raise PydanticCustomError(
            "card_expiry_invalid", "expiry must be a month and year, as MM/YY or MM/YYYY"
        )
    return f"{int(found[1]):02d}/{found[2]}"


def card_cvc(value: str) -> str:
    if not _CVC.fullmatch(value):
        raise PydanticCustomError("card_cvc_invalid", "CVC must be 3 or 4 digits")
    return value


class CardIn(Schema):
    card_number: Annotated[
        str,
        AfterValidator(card_number),
        Field(
            description="12-19 digits; spaces and dashes between them are ignored",
            examples=["4242 4242 4242 4242"],
        ),
    ]
    exp: Annotated[
        str,
        AfterValidator(card_expiry),
        Field(description="MM/YY or MM/YYYY; the month may be one digit", examples=["12/30"]),
    ]
    cvc: Annotated[
        str, AfterValidator(card_cvc), Field(description="3 or 4 digits", examples=["123"])
    ]


class CheckoutRequest(Schema):
    shipping_address: ShippingAddress
    payment: CardIn
