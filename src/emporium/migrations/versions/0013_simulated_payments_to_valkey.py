"""The simulated gateway's payments move to Valkey

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 01:05:00.000000

Two writes to PostgreSQL per order for a simulation cost the checkout a tenth of its
rate, and a flash sale a third (the writes queued with the payments waiting for a
sold-out product's rows). The built-in gateway keeps its payments in Valkey instead
(``payment/ledger.py``); the table goes.
"""

from collections.abc import Sequence

from alembic import op

from emporium.migrations import earlier

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("simulated_payments")


def downgrade() -> None:
    # The table as 0012 made it (empty: the payments stay in Valkey).
    earlier.load("0012_simulated_payments.py").upgrade()
