"""A partial index on the payments still to settle after a cancel

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 00:30:00.000000

A cancelled order's captured payment is ``refund_pending`` until the gateway has taken
the refund, and the payment of one cancelled before its outcome was known is
``void_pending`` while the reconciler watches for a charge that lands late. The
reconciler looks for both; the index holds only them, so the lookup stays small however
many payments the table keeps.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_payments_unsettled",
        "payments",
        ["updated_at"],
        postgresql_where="status IN ('refund_pending', 'void_pending')",
    )


def downgrade() -> None:
    op.drop_index("ix_payments_unsettled", table_name="payments")
