"""checkout_place: the first step of checkout in one round trip

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:00:00.000000

Claiming the idempotency key, locking the cart and its holds, taking lapsed holds
again and placing the order were four statements between a BEGIN and a COMMIT, six
round trips with the cart and the key locked throughout. As one function they run back
to back in the database, and the call commits on its own.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# With a request digest, the key is claimed first (an expired one is taken over in place); a key
# already claimed returns its row as `replay` and nothing else happens. Then the cart row
# is locked (it serialises checkouts of one cart), then its holds, then any lapsed
# units are reserved again through stock_reserve, the lock order of every stock writer.
# The order, its items (prices snapshotted), allocations (holds in id order, capped at
# each line's quantity), the payment row, the first timeline entry, the audit row and
# the outbox event are one statement, as the holds and lines go. A refusal raises, so
# nothing of it stays: cart_empty; product_unavailable with the product ids as DETAIL
# (a JSON array); insufficient_stock with DETAIL {"product_id", "available",
# "reclaimable"}.
CHECKOUT_PLACE = """
CREATE FUNCTION checkout_place(
    p_user bigint, p_key text, p_digest text, p_address text, p_created timestamptz,
    p_until timestamptz, p_gateway text, p_card_last4 text, p_correlation_id text, p_ip text,
    OUT placed_id bigint, OUT placed_total numeric, OUT placed_items jsonb,
    OUT replay jsonb, OUT rereserved int
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_claim bigint;
    v_cart bigint;
    v_unavailable jsonb;
    v_line record;
    v_available int;
    v_planned bigint;
    v_updated bigint;
    v_rows int;
BEGIN
    rereserved := 0;
    IF p_digest IS NOT NULL THEN
        INSERT INTO idempotency_keys (user_id, key, request_hash)
        VALUES (p_user, p_key, p_digest)
        ON CONFLICT ON CONSTRAINT uq_idempotency_keys_user_key DO UPDATE SET
            request_hash = EXCLUDED.request_hash, state = 'processing',
            response_status = NULL, response_body = NULL, order_id = NULL,
            created_at = now(), expires_at = now() + interval '24 hours'
        WHERE idempotency_keys.expires_at < now()
        RETURNING id INTO v_claim;
        IF v_claim IS NULL THEN
            SELECT jsonb_build_object(
                'request_hash', k.request_hash, 'state', k.state,
                'status', k.response_status, 'body', k.response_body)
            INTO replay
            FROM idempotency_keys k WHERE k.user_id = p_user AND k.key = p_key;
            RETURN;
        END IF;
    END IF;

    SELECT id INTO v_cart FROM carts WHERE user_id = p_user FOR UPDATE;
    IF v_cart IS NULL OR NOT EXISTS (SELECT 1 FROM cart_items WHERE cart_id = v_cart) THEN
        RAISE EXCEPTION 'cart_empty';
    END IF;
    PERFORM 1 FROM reservations WHERE cart_id = v_cart ORDER BY id FOR UPDATE;
    SELECT jsonb_agg(ci.product_id ORDER BY ci.product_id) INTO v_unavailable
    FROM cart_items ci JOIN products p ON p.id = ci.product_id
    WHERE ci.cart_id = v_cart AND NOT p.is_active;
    IF v_unavailable IS NOT NULL THEN
        RAISE EXCEPTION 'product_unavailable' USING DETAIL = v_unavailable::text;
    END IF;

    -- A hold that lapsed and was reaped is taken again, or the checkout is refused.
    FOR v_line IN
        SELECT ci.product_id, ci.quantity - coalesce(
            (SELECT sum(r.quantity) FROM reservations r
             WHERE r.cart_id = v_cart AND r.product_id = ci.product_id), 0)::int AS missing
        FROM cart_items ci WHERE ci.cart_id = v_cart ORDER BY ci.product_id
    LOOP
        CONTINUE WHEN v_line.missing <= 0;
        SELECT min(r.available), min(r.planned), min(r.updated), count(r.id)
        INTO v_available, v_planned, v_updated, v_rows
        FROM stock_reserve(v_line.product_id, v_line.missing, v_cart, p_until, p_user,
                           p_correlation_id, p_ip, 0) r;
        IF v_planned = 0 THEN
            RAISE EXCEPTION 'insufficient_stock' USING DETAIL = jsonb_build_object(
                'product_id', v_line.product_id, 'available', v_available,
                'reclaimable', EXISTS (
                    SELECT 1 FROM reservations
                    WHERE product_id = v_line.product_id AND reserved_until < now()))::text;
        END IF;
        IF v_updated <> v_planned THEN
            RAISE EXCEPTION 'stock of product % changed under its lock', v_line.product_id;
        END IF;
        rereserved := rereserved + v_rows;
    END LOOP;

    WITH lines AS MATERIALIZED (
        SELECT ci.product_id, p.seller_id, p.title, p.price AS unit_price, ci.quantity,
            p.price * ci.quantity AS line_total
        FROM cart_items ci JOIN products p ON p.id = ci.product_id
        WHERE ci.cart_id = v_cart
    ), holds AS MATERIALIZED (
        SELECT id, product_id, warehouse_id, quantity,
            sum(quantity) OVER (PARTITION BY product_id ORDER BY id) - quantity AS before
        FROM reservations WHERE cart_id = v_cart
    ), o AS (
        INSERT INTO orders (user_id, status, subtotal, shipping_total, total,
                            shipping_address, idempotency_key, created_at, updated_at)
        SELECT p_user, 'pending_payment', sum(line_total), 0, sum(line_total),
            p_address::jsonb, p_key, p_created, p_created
        FROM lines
        RETURNING id, total
    ), items AS (
        INSERT INTO order_items (order_id, product_id, seller_id, title, unit_price,
                                 quantity, line_total)
        SELECT o.id, l.product_id, l.seller_id, l.title, l.unit_price, l.quantity,
            l.line_total
        FROM o, lines l ORDER BY l.product_id
    ), allocations AS (
        INSERT INTO order_allocations (order_id, product_id, warehouse_id, quantity)
        SELECT o.id, a.product_id, a.warehouse_id, a.units
        FROM o, (
            SELECT h.product_id, h.warehouse_id,
                sum(least(h.quantity, greatest(l.quantity - h.before, 0)))::int AS units
            FROM holds h JOIN lines l ON l.product_id = h.product_id
            GROUP BY h.product_id, h.warehouse_id
        ) a
        WHERE a.units > 0
        ORDER BY a.product_id, a.warehouse_id
    ), released AS (
        DELETE FROM reservations WHERE id IN (SELECT id FROM holds)
    ), emptied AS (
        DELETE FROM cart_items WHERE cart_id = v_cart
    ), payment AS (
        INSERT INTO payments (order_id, gateway, idempotency_key, status, amount,
                              card_last4)
        SELECT o.id, p_gateway, 'order-' || o.id, 'pending', o.total, p_card_last4 FROM o
    ), timeline AS (
        INSERT INTO order_events (order_id, status, note, actor_user_id, created_at)
        SELECT o.id, 'pending_payment', '', p_user, p_created FROM o
    ), audit AS (
        INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values,
                                new_values, correlation_id, ip)
        SELECT p_user, 'order.created', 'order', o.id::text, NULL,
            jsonb_build_object('total', o.total::text,
                               'items', (SELECT sum(quantity) FROM lines)::int),
            p_correlation_id, p_ip
        FROM o
    ), event AS (
        INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
        SELECT 'order.created', 'order', o.id::text, '{}'::jsonb FROM o
    )
    SELECT o.id, o.total, (
        SELECT jsonb_agg(jsonb_build_object(
            'product_id', l.product_id, 'seller_id', l.seller_id, 'title', l.title,
            'unit_price', l.unit_price::text, 'quantity', l.quantity,
            'line_total', l.line_total::text) ORDER BY l.product_id)
        FROM lines l)
    INTO placed_id, placed_total, placed_items
    FROM o;
END $fn$
"""


def upgrade() -> None:
    op.execute(CHECKOUT_PLACE)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS checkout_place("
        "bigint, text, text, text, timestamptz, timestamptz, text, text, text, text)"
    )
