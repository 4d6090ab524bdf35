"""A withdrawn product's cart line shows no units free to add

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 09:00:00.000000

The lines cart_add_item returns gave each line the product's free stock as
``available``, the units still free to add, even for a withdrawn product, which can no
longer be added or bought. Such a line now shows 0, as the cart read does.
"""

from collections.abc import Sequence

from alembic import op

from emporium.migrations import earlier

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LINE_FREE = """'available', (SELECT coalesce(sum(s.quantity - s.reserved), 0) FROM stock s
                              WHERE s.product_id = ci.product_id)"""
LINE_FREE_IF_ACTIVE = """'available', CASE WHEN lp.is_active
                    THEN (SELECT coalesce(sum(s.quantity - s.reserved), 0) FROM stock s
                          WHERE s.product_id = ci.product_id)
                    ELSE 0 END"""


def _cart_add_item() -> str:
    """cart_add_item as 0010 left it."""
    text: str = earlier.load(
        "0010_fewer_checks_per_order.py"
    ).cart_add_item_reclaimable_on_refusal()
    assert "CREATE OR REPLACE FUNCTION" in text
    assert text.count(LINE_FREE) == 1
    return text


def upgrade() -> None:
    op.execute(_cart_add_item().replace(LINE_FREE, LINE_FREE_IF_ACTIVE))


def downgrade() -> None:
    op.execute(_cart_add_item())
