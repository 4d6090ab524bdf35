"""checkout_place_many: several checkouts placed by one call

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:00:00.000000

A server process places the orders of checkouts that arrive while its placement calls
are all under way with one call and one commit, as it marks paid the orders whose
payments are ready together. Each placement runs checkout_place in a subtransaction of
its own: a refusal (cart_empty, product_unavailable, insufficient_stock) undoes that
checkout only and comes back as its ``error`` and ``error_detail``; any other error
fails the call. Carts are taken in the order given (the server sorts them by user), so
two calls never wait on each other's carts in opposite orders.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKOUT_PLACE_MANY = """
CREATE FUNCTION checkout_place_many(
    p_users bigint[], p_keys text[], p_digests text[], p_addresses text[],
    p_created timestamptz[], p_until timestamptz[], p_gateway text, p_card_last4 text[],
    p_correlation_ids text[], p_ips text[]
) RETURNS TABLE (
    ordinal int, placed_id bigint, placed_total numeric, placed_items jsonb, replay jsonb,
    rereserved int, error text, error_detail text
) LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_users, 1), 0) LOOP
        ordinal := i;
        error := NULL;
        error_detail := NULL;
        BEGIN
            SELECT c.placed_id, c.placed_total, c.placed_items, c.replay, c.rereserved
            INTO placed_id, placed_total, placed_items, replay, rereserved
            FROM checkout_place(p_users[i], p_keys[i], p_digests[i], p_addresses[i],
                                p_created[i], p_until[i], p_gateway, p_card_last4[i],
                                p_correlation_ids[i], p_ips[i]) c;
        EXCEPTION WHEN raise_exception THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT, error_detail = PG_EXCEPTION_DETAIL;
            placed_id := NULL;
            placed_total := NULL;
            placed_items := NULL;
            replay := NULL;
            rereserved := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END $fn$
"""


def upgrade() -> None:
    op.execute(CHECKOUT_PLACE_MANY)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION checkout_place_many(bigint[], text[], text[], text[], timestamptz[],"
        " timestamptz[], text, text[], text[], text[])"
    )
