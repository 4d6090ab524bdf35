from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field, StrictBool, StrictInt, StringConstraints, field_validator

from emporium.kit.schemas import CleanStr, Schema, TrimmedStr, reject_nul

Title = Annotated[TrimmedStr, StringConstraints(min_length=1, max_length=500)]
Description = Annotated[CleanStr, Field(max_length=20000)]
Brand = Annotated[TrimmedStr, StringConstraints(max_length=200)]
Price = Annotated[
    Decimal, Field(ge=0, le=Decimal("9999999999.99"), max_digits=12, decimal_places=2)
]
AttributeValue = str | int | float | bool
ImageUrl = Annotated[TrimmedStr, StringConstraints(min_length=1, max_length=2000)]


class CategoryRef(Schema):
    id: int
    name: str
    slug: str


class SellerRef(Schema):
    id: int
    name: str


class CategoryNode(Schema):
    id: int
    name: str
    slug: str
    parent_id: int | None
    product_count: int
    children: list[CategoryNode] = []


class _ProductFields(Schema):
    @field_validator("attributes", check_fields=False)
    @classmethod
    def _limit_attributes(
        cls, v: dict[str, AttributeValue] | None
    ) -> dict[str, AttributeValue] | None:
        if v is not None:
            if len(v) > 100:
                raise ValueError("at most 100 attributes")
            if any(not k or len(k) > 100 for k in v):
                raise ValueError("attribute names must be 1-100 characters")
            for key, item in v.items():
                reject_nul(key)
                if isinstance(item, str):
                    reject_nul(item)
        return v


class ProductCreate(_ProductFields):
    title: Title
    description: Description = ""
    brand: Brand = ""
    category_id: StrictInt = Field(gt=0)
    price: Price
    images: Annotated[list[ImageUrl], Field(max_length=20)] = []
    attributes: dict[str, AttributeValue] = {}
    seller_id: StrictInt | None = Field(
        default=None, gt=0, description="Admins only; a seller always creates for themselves."
    )


class ProductUpdate(_ProductFields):
    title: Title | None = None
    description: Description | None = None
    brand: Brand | None = None
    category_id: StrictInt | None = Field(default=None, gt=0)
    price: Price | None = None
    images: Annotated[list[ImageUrl], Field(max_length=20)] | None = None
    attributes: dict[str, AttributeValue] | None = None
    is_active: StrictBool | None = None


class ProductSummary(Schema):
    id: int
    title: str
    brand: str
    category_id: int
    price: Decimal
    currency: str
    rating: Decimal | None
    review_count: int
    image: str | None
    available: int
    in_stock: bool


class Product(Schema):
    id: int
    title: str
    description: str
    brand: str
    category: CategoryRef
    seller: SellerRef
    price: Decimal
    currency: str
    images: list[str]
    attributes: dict[str, AttributeValue]
    rating: Decimal | None
    review_count: int
    is_active: bool
    available: int
    in_stock: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(Schema):
    items: list[ProductSummary]
    next_cursor: str | None
