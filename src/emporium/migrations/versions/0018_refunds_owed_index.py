"""A partial index on the refunds still owed

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 00:30:00.000000

A cancelled order's captured payment is ``refund_pending`` until the gateway has taken
the refund; the reconciler looks for those it could not settle at the time. The index
holds only them, so the lookup stays small however many payments the table keeps.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_payments_refund_pending",
        "payments",
        ["updated_at"],
        postgresql_where="status = 'refund_pending'",
    )


def downgrade() -> None:
    op.drop_index("ix_payments_refund_pending", table_name="payments")
