"""Drop the unkeyed fingerprints of stored checkout bodies

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 17:00:00.000000

``idempotency_keys.request_hash`` held a plain SHA-256 of the checkout body, card number
and CVC included; with the card's last four digits and its issuer known, the rest can be
found by trying them. Fingerprints are now HMACs under the server's secret key, without
the CVC (``hmac:…``). The old ones cannot be converted, so they are replaced by
``legacy``: those keys (24 hours at most) still answer as stored, whatever the body.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE idempotency_keys SET request_hash = 'legacy' WHERE request_hash NOT LIKE 'hmac:%'"
    )


def downgrade() -> None:
    # Nothing to restore: the fingerprints removed are what the upgrade is for.
    pass
