"""idempotency_keys: a BRIN index on expires_at for the purger

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:30:00.000000

Keys are written in expiry order, so a block-range index finds the expired ones at the
start of the table for a few pages of index, and costs a checkout next to nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_idempotency_keys_expires_at",
            "idempotency_keys",
            ["expires_at"],
            postgresql_using="brin",
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_idempotency_keys_expires_at",
            table_name="idempotency_keys",
            postgresql_concurrently=True,
            if_exists=True,
        )
