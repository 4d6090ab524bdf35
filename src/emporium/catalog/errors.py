from __future__ import annotations

from fastapi import status

from emporium.kit.errors import AppError, InvalidInput, NotFound


class ProductNotFound(NotFound):
    code = "product_not_found"


class CategoryNotFound(NotFound):
    code = "category_not_found"


class SellerNotFound(NotFound):
    code = "seller_not_found"


class NotProductOwner(AppError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "not_product_owner"


class InvalidCursor(AppError):
    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    code = "invalid_cursor"


class SellerRequired(InvalidInput):
    code = "seller_id_required"
