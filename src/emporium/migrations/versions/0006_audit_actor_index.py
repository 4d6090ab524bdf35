"""audit_logs: an index for an actor's trail

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:00:00.000000

`GET /api/v1/admin/audit?actor_id=` read the trail newest first through the primary key,
filtering as it went: 1.3 s over 1.5 million rows for an actor with a few dozen, and
every order writes four. Built concurrently, so that a large trail keeps taking writes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_audit_logs_actor_user_id_id",
            "audit_logs",
            ["actor_user_id", "id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_audit_logs_actor_user_id_id",
            table_name="audit_logs",
            postgresql_concurrently=True,
            if_exists=True,
        )
