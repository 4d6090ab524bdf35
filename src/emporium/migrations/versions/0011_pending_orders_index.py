"""A partial index for the reconciler; room on idempotency pages for the answer

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 00:00:00.000000

- orders had an index on (status, updated_at) for the reconciler, which looks only for
  orders still in pending_payment. Every row version had an entry: one when the order
  is placed and one more when it is paid, so the index grew with the table. A partial
  index on the pending orders' created_at answers the reconciler's query and holds
  only the orders not yet settled.
- An idempotency key's row is claimed small and then completed with the whole answer.
  On full pages the completed row moved to another page, with new entries in both of
  the table's B-tree indexes (a third of completions); a fillfactor of 70 leaves room
  for it on its own page.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_pending_payment",
        "orders",
        ["created_at"],
        postgresql_where="status = 'pending_payment'",
    )
    op.drop_index("ix_orders_status_updated_at", table_name="orders")
    # Applies to pages written from now on; existing pages keep their rows.
    op.execute("ALTER TABLE idempotency_keys SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys RESET (fillfactor)")
    op.create_index("ix_orders_status_updated_at", "orders", ["status", "updated_at"])
    op.drop_index("ix_orders_pending_payment", table_name="orders")
