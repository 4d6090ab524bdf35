"""A replayed answer comes back byte for byte

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 05:40:00.000000

``idempotency_keys.response_body`` was ``jsonb``, which reorders an object's keys, so a
replay carried the first answer's content with its keys in another order. It becomes
``json``, which keeps the text as written; and checkout_place hands the stored answer
back as that text (a string inside its ``replay`` object), since nesting it in jsonb
would reorder it again.
"""

from collections.abc import Sequence

from alembic import op

from emporium.migrations import earlier

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BODY_AS_JSONB = "'body', k.response_body)"
BODY_AS_TEXT = "'body', k.response_body::text)"


def _checkout_place() -> str:
    """checkout_place as 0010 left it."""
    text: str = earlier.load("0010_fewer_checks_per_order.py").checkout_place_checks_together()
    assert "CREATE OR REPLACE FUNCTION" in text
    assert text.count(BODY_AS_JSONB) == 1
    return text


def upgrade() -> None:
    op.execute(
        "ALTER TABLE idempotency_keys ALTER COLUMN response_body TYPE json"
        " USING response_body::json"
    )
    op.execute(_checkout_place().replace(BODY_AS_JSONB, BODY_AS_TEXT))


def downgrade() -> None:
    op.execute(_checkout_place())
    op.execute(
        "ALTER TABLE idempotency_keys ALTER COLUMN response_body TYPE jsonb"
        " USING response_body::jsonb"
    )
