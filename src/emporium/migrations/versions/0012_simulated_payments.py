"""The built-in simulated gateway's payments

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 00:20:00.000000

The simulated gateway kept its payments in the memory of each server process: with
``serve --workers N`` a refund reached a process that had never seen the charge, and
after a restart none had. The gateway built into the server now keeps them here; the
table stands in for the gateway's own records, so nothing of Emporium's refers to it.

It is UNLOGGED: its writes skip the WAL and a commit of them waits for no flush, so the
simulation costs the checkout little. PostgreSQL keeps such a table across a clean
shutdown and empties it after a crash; a simulated gateway may forget its payments then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "simulated_payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.Column("decline_code", sa.String(length=50), nullable=True),
        sa.Column("refunded_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount",
            name=op.f("ck_simulated_payments_refund_within_amount"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulated_payments")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_simulated_payments_idempotency_key")),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("simulated_payments")
