from emporium.models.audit_log import AuditLog
from emporium.models.base import Base
from emporium.models.category import Category
from emporium.models.outbox import OutboxEvent
from emporium.models.product import Product
from emporium.models.seller import Seller
from emporium.models.stock import Stock
from emporium.models.user import Role, User
from emporium.models.warehouse import Warehouse

__all__ = [
    "AuditLog",
    "Base",
    "Category",
    "OutboxEvent",
    "Product",
    "Role",
    "Seller",
    "Stock",
    "User",
    "Warehouse",
]
