"""stock_reserve and cart_add_item: reservation in one round trip

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 07:40:00.000000

A reservation locks the product's stock rows and then plans and writes in a second
statement, whose snapshot sees the rows as locked (a lock taken in the same statement as
the write is not enough: the write may be computed from the statement's older
snapshot). As two statements sent by the application, the rows stayed locked across two
round trips and the commit's; in a sell-out every buyer queued behind that. In a
function, the two statements run back to back in the database, and add to cart runs as
one autocommitted call, so the lock lasts only as long as the database's own work.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Plans the split (most free first, ties by warehouse id: plan_allocation), puts the
# units on stock.reserved, creates the reservations and, with p_line > 0, the cart line
# units, and writes the audit row and the outbox event. Short of stock it changes nothing
# and reports what is free (planned = 0).
STOCK_RESERVE = """
CREATE FUNCTION stock_reserve(
    p_product bigint, p_quantity int, p_cart bigint, p_until timestamptz,
    p_actor bigint, p_correlation_id text, p_ip text, p_line int
) RETURNS TABLE (
    available int, planned bigint, updated bigint,
    id bigint, warehouse_id bigint, quantity int, reserved_until timestamptz
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM stock WHERE product_id = p_product ORDER BY warehouse_id FOR UPDATE;
    RETURN QUERY
    WITH locked AS MATERIALIZED (
        SELECT warehouse_id, quantity - reserved AS free FROM stock
        WHERE product_id = p_product
    ), total AS (
        SELECT coalesce(sum(greatest(free, 0)), 0)::int AS available FROM locked
    ), plan AS MATERIALIZED (
        SELECT warehouse_id, least(free, p_quantity - before)::int AS units
        FROM (
            SELECT warehouse_id, free,
                sum(free) OVER (ORDER BY free DESC, warehouse_id) - free AS before
            FROM locked WHERE free > 0
        ) ranked
        WHERE before < p_quantity AND (SELECT available FROM total) >= p_quantity
    ), s AS (
        -- The CHECK constraints refuse reserved > quantity whatever the plan says.
        UPDATE stock SET reserved = stock.reserved + plan.units, updated_at = now()
        FROM plan
        WHERE stock.product_id = p_product AND stock.warehouse_id = plan.warehouse_id
        RETURNING stock.warehouse_id, stock.reserved, plan.units
    ), r AS (
        INSERT INTO reservations (cart_id, product_id, warehouse_id, quantity, reserved_until)
        SELECT p_cart, p_product, warehouse_id, units, p_until FROM plan
        RETURNING id, warehouse_id, quantity, reserved_until
    ), line AS (
        INSERT INTO cart_items (cart_id, product_id, quantity)
        SELECT p_cart, p_product, p_line WHERE p_line > 0 AND EXISTS (SELECT 1 FROM plan)
        ON CONFLICT (cart_id, product_id)
        DO UPDATE SET quantity = cart_items.quantity + EXCLUDED.quantity
    ), audit AS (
        INSERT INTO audit_logs
            (actor_user_id, action, entity_type, entity_id, old_values, new_values,
             correlation_id, ip)
        SELECT p_actor, 'inventory.reserved', 'product', p_product::text,
            jsonb_build_object('reserved',
                jsonb_object_agg(warehouse_id::text, reserved - units)),
            jsonb_build_object('reserved', jsonb_object_agg(warehouse_id::text, reserved)),
            p_correlation_id, p_ip
        FROM s HAVING count(*) > 0
    ), event AS (
        INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
        SELECT 'stock.changed', 'product', p_product::text,
            jsonb_build_object('reserved', jsonb_object_agg(warehouse_id::text, reserved))
        FROM s HAVING count(*) > 0
    )
    SELECT total.available, (SELECT count(*) FROM plan), (SELECT count(*) FROM s),
        r.id, r.warehouse_id, r.quantity, r.reserved_until
    FROM total LEFT JOIN r ON true
    ORDER BY r.id;
END $fn$
"""

# Add to cart, whole: take the cart (a user's is created on first use, a guest's when
# the token finds none; the row lock serialises changes to one cart), slide its holds,
# check the product and the line limit, reserve, and return the cart's lines as they now
# are. A refusal raises, so nothing of it stays: product_not_found,
# quantity_limit_exceeded, or insufficient_stock with the free units as DETAIL and HINT
# 'reclaimable' when expired holds of the product could be released.
CART_ADD_ITEM = """
CREATE FUNCTION cart_add_item(
    p_user bigint, p_guest_hash text, p_new_guest_hash text, p_product bigint,
    p_quantity int, p_until timestamptz, p_max_line int, p_correlation_id text, p_ip text
) RETURNS jsonb LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_cart bigint;
    v_created boolean := false;
    v_active boolean;
    v_current int;
    v_free int;
    v_reclaimable boolean;
    v_available int;
    v_planned bigint;
    v_updated bigint;
    v_rows int;
BEGIN
    IF p_user IS NOT NULL THEN
        INSERT INTO carts (user_id) VALUES (p_user)
        ON CONFLICT (user_id) DO UPDATE SET updated_at = now() RETURNING id INTO v_cart;
    ELSE
        IF p_guest_hash IS NOT NULL THEN
            SELECT id INTO v_cart FROM carts WHERE guest_token_hash = p_guest_hash FOR UPDATE;
        END IF;
        IF v_cart IS NULL THEN
            INSERT INTO carts (guest_token_hash) VALUES (p_new_guest_hash) RETURNING id INTO v_cart;
            v_created := true;
        END IF;
    END IF;
    UPDATE reservations SET reserved_until = p_until WHERE cart_id = v_cart;
    SELECT is_active INTO v_active FROM products WHERE id = p_product;
    IF v_active IS NOT TRUE THEN
        RAISE EXCEPTION 'product_not_found';
    END IF;
    SELECT quantity INTO v_current FROM cart_items
    WHERE cart_id = v_cart AND product_id = p_product;
    IF coalesce(v_current, 0) + p_quantity > p_max_line THEN
        RAISE EXCEPTION 'quantity_limit_exceeded';
    END IF;
    v_reclaimable := EXISTS (
        SELECT 1 FROM reservations WHERE product_id = p_product AND reserved_until < now()
    );
    -- Refuse without queueing for the row locks when a plain read shows too little.
    SELECT coalesce(sum(quantity - reserved), 0)::int INTO v_free FROM stock
    WHERE product_id = p_product;
    IF v_free < p_quantity THEN
        RAISE EXCEPTION 'insufficient_stock' USING
            DETAIL = v_free::text, HINT = CASE WHEN v_reclaimable THEN 'reclaimable' ELSE '' END;
    END IF;
    SELECT min(r.available), min(r.planned), min(r.updated), count(r.id)
    INTO v_available, v_planned, v_updated, v_rows
    FROM stock_reserve(p_product, p_quantity, v_cart, p_until, p_user, p_correlation_id,
                       p_ip, p_quantity) r;
    IF v_planned = 0 THEN
        RAISE EXCEPTION 'insufficient_stock' USING
            DETAIL = v_available::text,
            HINT = CASE WHEN v_reclaimable THEN 'reclaimable' ELSE '' END;
    END IF;
    IF v_updated <> v_planned THEN
        RAISE EXCEPTION 'stock of product % changed under its lock', p_product;
    END IF;
    RETURN jsonb_build_object(
        'cart_id', v_cart, 'created', v_created, 'reservations', v_rows,
        'available', v_available - p_quantity,
        'lines', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                'product_id', ci.product_id, 'title', lp.title, 'price', lp.price::text,
                'quantity', ci.quantity,
                'held', EXISTS (SELECT 1 FROM reservations h
                                WHERE h.cart_id = ci.cart_id AND h.product_id = ci.product_id),
                'available', (SELECT coalesce(sum(s.quantity - s.reserved), 0) FROM stock s
                              WHERE s.product_id = ci.product_id)
            ) ORDER BY ci.added_at, ci.product_id), '[]'::jsonb)
            FROM cart_items ci JOIN products lp ON lp.id = ci.product_id
            WHERE ci.cart_id = v_cart
        )
    );
END $fn$
"""


def upgrade() -> None:
    op.execute(STOCK_RESERVE)
    op.execute(CART_ADD_ITEM)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS cart_add_item(bigint, text, text, bigint, int, timestamptz, int, text, text)"
    )
    op.execute(
        "DROP FUNCTION IF EXISTS stock_reserve(bigint, int, bigint, timestamptz, bigint, text, text, int)"
    )
