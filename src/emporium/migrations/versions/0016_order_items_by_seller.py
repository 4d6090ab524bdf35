"""An index on order items by seller, for sellers' fulfillment lists

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:00:00.000000

``GET /api/v1/fulfillment/orders`` lists, for a seller, the orders with an item of
theirs, newest first: (seller_id, order_id) walks them without reading other sellers'
orders.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_order_items_seller_id_order_id", "order_items", ["seller_id", "order_id"])


def downgrade() -> None:
    op.drop_index("ix_order_items_seller_id_order_id", table_name="order_items")
