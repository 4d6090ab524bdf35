from emporium.models.audit_log import AuditLog
from emporium.models.base import Base
from emporium.models.cart import Cart, CartItem, Reservation
from emporium.models.category import Category
from emporium.models.order import (
    IdempotencyKey,
    Order,
    OrderAllocation,
    OrderEvent,
    OrderItem,
    Payment,
    Shipment,
)
from emporium.models.outbox import OutboxEvent
from emporium.models.product import Product
from emporium.models.seller import Seller
from emporium.models.stock import Stock
from emporium.models.user import Role, User
from emporium.models.warehouse import Warehouse

__all__ = [
    "AuditLog",
    "Base",
    "Cart",
    "CartItem",
    "Category",
    "IdempotencyKey",
    "Order",
    "OrderAllocation",
    "OrderEvent",
    "OrderItem",
    "OutboxEvent",
    "Payment",
    "Product",
    "Reservation",
    "Role",
    "Seller",
    "Shipment",
    "Stock",
    "User",
    "Warehouse",
]
