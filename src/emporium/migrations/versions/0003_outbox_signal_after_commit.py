"""outbox: wake the dispatcher after commit, not from a trigger

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 07:00:00.000000

A NOTIFY inside a transaction holds PostgreSQL's notify queue lock from before its commit
until the commit record is flushed, so every transaction that wrote an outbox row
committed one at a time. The application now signals after commit (emporium.kit.outbox).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")


def downgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('emporium_outbox', '');
            RETURN NULL;
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )
