"""Fewer statements and index entries per order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 11:30:00.000000

- cart_add_item looked for expired holds of the product on every call, though only a
  refusal reports them (HINT 'reclaimable'); it now looks only when it refuses.
- checkout_place asked whether the cart had lines and which of its products were
  withdrawn in two statements; one aggregate over the lines answers both.
- order_allocations had an index on order_id beside the unique key
  (order_id, product_id, warehouse_id), which serves the same lookups; every
  allocation paid for an entry in both.
"""

from collections.abc import Sequence

from alembic import op

from emporium.migrations import earlier

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECLAIMABLE_EAGER = """    v_reclaimable := EXISTS (
        SELECT 1 FROM reservations WHERE product_id = p_product AND reserved_until < now()
    );
"""
HINT_EAGER = "HINT = CASE WHEN v_reclaimable THEN 'reclaimable' ELSE '' END"
HINT_LAZY = """HINT = CASE WHEN EXISTS (
                SELECT 1 FROM reservations
                WHERE product_id = p_product AND reserved_until < now()
            ) THEN 'reclaimable' ELSE '' END"""

CHECKS_APART = """    IF v_cart IS NULL OR NOT EXISTS (SELECT 1 FROM cart_items WHERE cart_id = v_cart) THEN
        RAISE EXCEPTION 'cart_empty';
    END IF;
    PERFORM 1 FROM reservations WHERE cart_id = v_cart ORDER BY id FOR UPDATE;
    SELECT jsonb_agg(ci.product_id ORDER BY ci.product_id) INTO v_unavailable
    FROM cart_items ci JOIN products p ON p.id = ci.product_id
    WHERE ci.cart_id = v_cart AND NOT p.is_active;
"""
CHECKS_TOGETHER = """    PERFORM 1 FROM reservations WHERE cart_id = v_cart ORDER BY id FOR UPDATE;
    SELECT count(*),
        jsonb_agg(ci.product_id ORDER BY ci.product_id) FILTER (WHERE NOT p.is_active)
    INTO v_lines, v_unavailable
    FROM cart_items ci JOIN products p ON p.id = ci.product_id
    WHERE ci.cart_id = v_cart;
    IF v_lines = 0 THEN
        RAISE EXCEPTION 'cart_empty';
    END IF;
"""
DECLARE_APART = "    v_unavailable jsonb;\n"
DECLARE_TOGETHER = "    v_unavailable jsonb;\n    v_lines bigint;\n"


def _replacing(text: str) -> str:
    return text.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _cart_add_item() -> str:
    """0004's function text, as the replacement starts from it."""
    text: str = earlier.load("0004_reserve_functions.py").CART_ADD_ITEM
    assert text.count(RECLAIMABLE_EAGER) == 1
    assert text.count(HINT_EAGER) == 2
    return _replacing(text)


def cart_add_item_reclaimable_on_refusal() -> str:
    """cart_add_item as this revision leaves it."""
    return (
        _cart_add_item()
        .replace(RECLAIMABLE_EAGER, "")
        .replace("    v_reclaimable boolean;\n", "")
        .replace(HINT_EAGER, HINT_LAZY)
    )


def _checkout_place() -> str:
    """0008's function text (0005's with the holds released by cart)."""
    m8 = earlier.load("0008_checkout_place_release_by_cart.py")
    text: str = m8._placed().replace(m8.BY_ID, m8.BY_CART)
    assert text.count(CHECKS_APART) == 1
    assert text.count(DECLARE_APART) == 1
    return text


def checkout_place_checks_together() -> str:
    """checkout_place as this revision leaves it."""
    return (
        _checkout_place()
        .replace(CHECKS_APART, CHECKS_TOGETHER)
        .replace(DECLARE_APART, DECLARE_TOGETHER)
    )


def upgrade() -> None:
    op.execute(cart_add_item_reclaimable_on_refusal())
    op.execute(checkout_place_checks_together())
    op.drop_index("ix_order_allocations_order_id", table_name="order_allocations")


def downgrade() -> None:
    op.create_index(
        "ix_order_allocations_order_id", "order_allocations", ["order_id"], unique=False
    )
    op.execute(_checkout_place())
    op.execute(_cart_add_item())
