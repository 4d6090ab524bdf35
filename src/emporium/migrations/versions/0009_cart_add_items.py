"""cart_add_items: several buyers' add to cart of one product in one call

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:00:00.000000

In a sell-out each server process lets one reservation of a product reach its stock rows
at a time, and the buyers behind it wait in the process. Handing the turn from one buyer
to the next costs a turn of a busy event loop, several times what the reservation costs
in the database; the buyer let in now takes those queued behind it along, and this
function runs cart_add_item for each of them in turn. Each runs in a subtransaction of
its own, so a refusal (or any error) undoes only that buyer's change and is reported in
its row, in the order given.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CART_ADD_ITEMS = """
CREATE FUNCTION cart_add_items(
    p_users bigint[], p_guest_hashes text[], p_new_guest_hashes text[], p_product bigint,
    p_quantities int[], p_until timestamptz[], p_max_line int, p_correlation_ids text[],
    p_ips text[]
) RETURNS TABLE (result jsonb, code text, message text, detail text, hint text)
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_quantities, 1), 0) LOOP
        code := NULL;
        message := NULL;
        detail := NULL;
        hint := NULL;
        BEGIN
            result := cart_add_item(
                p_users[i], p_guest_hashes[i], p_new_guest_hashes[i], p_product,
                p_quantities[i], p_until[i], p_max_line, p_correlation_ids[i], p_ips[i]);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
            result := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END $fn$
"""


def upgrade() -> None:
    op.execute(CART_ADD_ITEMS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS cart_add_items("
        "bigint[], text[], text[], bigint, int[], timestamptz[], int, text[], text[])"
    )
