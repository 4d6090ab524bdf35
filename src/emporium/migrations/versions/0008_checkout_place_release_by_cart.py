"""checkout_place: release the cart's holds through the cart's index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:00:00.000000

The holds were deleted by id alone (`id IN (SELECT id FROM holds)`). The planner guessed
a dozen holds against a few thousand rows and scanned the whole reservations table, dead
rows and all, in every checkout; narrowed by the cart it walks the cart's index instead.
"""

from collections.abc import Sequence

from alembic import op

from emporium.migrations import earlier

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BY_ID = "DELETE FROM reservations WHERE id IN (SELECT id FROM holds)"
BY_CART = "DELETE FROM reservations WHERE cart_id = v_cart AND id IN (SELECT id FROM holds)"


def _placed() -> str:
    """0005's function text, as the replacement starts from it."""
    text: str = earlier.load("0005_checkout_place.py").CHECKOUT_PLACE
    assert text.count(BY_ID) == 1
    return text.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute(_placed().replace(BY_ID, BY_CART))


def downgrade() -> None:
    op.execute(_placed())
