"""Random cart → order lifecycles keep the inventory books balanced.

Rules drive the service layer directly (no HTTP), one transaction per rule: cart add /
update / remove, expiry (time travel, then the reaper), checkout (create + pay), a
declined payment, a pending order paid later, cancel, and ship → deliver → refund. After
every step, whatever the rule's outcome (domain errors roll back):

* every stock row has ``quantity >= reserved >= 0``;
* ``stock.reserved`` == live reservations + 'held' order allocations, per row;
* per product, units on hand + 'committed' allocations == the units seeded
  ('restocked' allocations are back on hand);
* every cart line == the sum of its reservations, and no reservation lacks a line;
* every order's allocations cover its items and are all in the state its status implies.

Like tests/cart/test_cart_stateful.py, the machine runs on its own event loop and engine
and seeds (after truncating) its own catalog per example, so it needs no app fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from emporium.cart import service as cart
from emporium.cart.tasks import ReservationReaper
from emporium.config import Settings
from emporium.inventory.reservations import InsufficientStock
from emporium.kit.db import UnitOfWork, create_engine, create_sessionmaker
from emporium.kit.errors import AppError
from emporium.models import (
    Cart,
    CartItem,
    Category,
    Order,
    OrderAllocation,
    OrderItem,
    Product,
    Role,
    Seller,
    Stock,
    User,
    Warehouse,
)
from emporium.order.service import orders
from tests.checkout.helpers import ADDRESS, stock_of
from tests.conftest import TABLES

T = TypeVar("T")
TTL = timedelta(minutes=30)
USERS = 2
# Small stock over two warehouses, so carts and orders compete and run short.
STOCK = {"a": (4, 3), "b": (2, 0)}
INITIAL = {key: sum(units) for key, units in STOCK.items()}

# The single allocation state each order status implies (cancel and refund: either one).
ALLOCATION_STATES: dict[str, frozenset[str]] = {
    "pending_payment": frozenset({"held"}),
    "paid": frozenset({"committed"}),
    "partially_shipped": frozenset({"committed"}),
    "shipped": frozenset({"committed"}),
    "delivered": frozenset({"committed"}),
    "payment_failed": frozenset({"returned"}),
    "cancelled": frozenset({"released", "restocked"}),
    "refunded": frozenset({"committed", "restocked"}),
}


class Env:
    """An event loop and an engine of the machine's own (the app's belong to the test loop)."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = self.loop.run_until_complete(self._engine(database_url))
        self.maker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)

    @staticmethod
    async def _engine(url: str) -> AsyncEngine:
        return create_engine(url, pool_size=2)

    def run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return self.loop.run_until_complete(wrap())

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()


@dataclass
class Seeded:
    products: dict[str, int]  # key -> product id
    warehouses: list[int]
    customers: list[User]
    admin: User


async def seed(maker: async_sessionmaker[AsyncSession]) -> Seeded:
    """Empty every table, then a seller, two warehouses, two products, two customers, an admin."""
    async with maker() as s, s.begin():
        # Replica mode (this transaction only) skips the triggers guarding audit_logs.
        await s.execute(text("SET LOCAL session_replication_role = replica"))
        await s.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    async with maker() as s, s.begin():
        seller = Seller(name="Stateful", slug="stateful")
        category = Category(name="Things", slug="things", path="/1/", depth=0)
        warehouses = [Warehouse(code=c, name=f"Warehouse {c}") for c in ("W1", "W2")]
        s.add_all([seller, category, *warehouses])
        await s.flush()
        products: dict[str, int] = {}
        for key, units in STOCK.items():
            product = Product(
                title=f"Product {key}",
                price=Decimal("10.00"),
                seller_id=seller.id,
                category_id=category.id,
            )
            s.add(product)
            await s.flush()
            products[key] = product.id
            s.add_all(
                Stock(product_id=product.id, warehouse_id=w.id, quantity=q)
                for w, q in zip(warehouses, units, strict=True)
            )
        customers = [
            User(email=f"buyer{i}@example.com", name=f"buyer{i}", role=Role.customer.value)
            for i in range(USERS)
        ]
        admin = User(email="admin@example.com", name="admin", role=Role.admin.value)
        s.add_all([*customers, admin])
        await s.flush()
    # expire_on_commit=False: the users stay loaded, usable as actors in later sessions.
    return Seeded(products, [w.id for w in warehouses], customers, admin)


Lines = dict[int, int]


async def cart_lines(maker: async_sessionmaker[AsyncSession], user_id: int) -> Lines:
    async with maker() as s:
        rows = await s.execute(
            select(CartItem.product_id, CartItem.quantity)
            .join(Cart, Cart.id == CartItem.cart_id)
            .where(Cart.user_id == user_id)
        )
        return {int(p): int(q) for p, q in rows.all()}


async def order_lines(maker: async_sessionmaker[AsyncSession], order_id: int) -> Lines:
    async with maker() as s:
        rows = await s.execute(
            select(OrderItem.product_id, OrderItem.quantity).where(OrderItem.order_id == order_id)
        )
        return {int(p): int(q) for p, q in rows.all()}


async def violations(
    maker: async_sessionmaker[AsyncSession], initial: dict[int, int]
) -> dict[str, list[tuple[object, ...]]]:
    """Every row breaking an inventory invariant, by invariant; all empty when books balance."""
    queries = {
        "stock_bounds": "SELECT product_id, warehouse_id, quantity, reserved FROM stock"
        " WHERE NOT (quantity >= reserved AND reserved >= 0)",
        # reserved == live reservations + held order allocations, per (product, warehouse)
        "reserved_accounted": """
            SELECT s.product_id, s.warehouse_id, s.reserved, r.units, a.units FROM stock s
            CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) AS units FROM reservations
                WHERE product_id = s.product_id AND warehouse_id = s.warehouse_id) r
            CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) AS units
                FROM order_allocations WHERE state = 'held'
                AND product_id = s.product_id AND warehouse_id = s.warehouse_id) a
            WHERE s.reserved <> r.units + a.units""",
        "cart_line_reserved": """
            SELECT c.cart_id, c.product_id, c.quantity, COALESCE(SUM(r.quantity), 0)
            FROM cart_items c LEFT JOIN reservations r
                ON r.cart_id = c.cart_id AND r.product_id = c.product_id
            GROUP BY c.cart_id, c.product_id, c.quantity
            HAVING c.quantity <> COALESCE(SUM(r.quantity), 0)""",
        "orphan_reservations": """
            SELECT r.id, r.cart_id, r.product_id FROM reservations r
            LEFT JOIN cart_items c ON c.cart_id = r.cart_id AND c.product_id = r.product_id
            WHERE c.cart_id IS NULL""",
        # an order's allocations split exactly its items over warehouses
        "allocations_cover_items": """
            SELECT i.order_id, i.product_id, SUM(i.quantity), a.units FROM order_items i
            CROSS JOIN LATERAL (SELECT COALESCE(SUM(quantity), 0) AS units
                FROM order_allocations
                WHERE order_id = i.order_id AND product_id = i.product_id) a
            GROUP BY i.order_id, i.product_id, a.units
            HAVING SUM(i.quantity) <> a.units""",
    }
    found: dict[str, list[tuple[object, ...]]] = {}
    async with maker() as s:
        for name, sql in queries.items():
            found[name] = [tuple(row) for row in (await s.execute(text(sql))).all()]
        # on hand + sold == received, per product
        rows = await s.execute(
            text(
                "SELECT p.id, (SELECT COALESCE(SUM(quantity), 0) FROM stock"
                "  WHERE product_id = p.id),"
                " (SELECT COALESCE(SUM(quantity), 0) FROM order_allocations"
                "  WHERE product_id = p.id AND state = 'committed')"
                " FROM products p"
            )
        )
        found["units_conserved"] = [
            (pid, on_hand, sold, initial.get(pid))
            for pid, on_hand, sold in rows.all()
            if on_hand + sold != initial.get(pid)
        ]
        statuses = await s.execute(
            select(Order.id, Order.status, OrderAllocation.state)
            .join(OrderAllocation, OrderAllocation.order_id == Order.id, isouter=True)
            .order_by(Order.id)
        )
        per_order: dict[int, tuple[str, set[str | None]]] = {}
        for oid, status, state in statuses.all():
            per_order.setdefault(oid, (status, set()))[1].add(state)
        found["allocation_states"] = [
            (oid, status, sorted(str(s) for s in states))
            for oid, (status, states) in per_order.items()
            if len(states) != 1 or not states <= ALLOCATION_STATES[status]
        ]
    return found


async def order_statuses(maker: async_sessionmaker[AsyncSession]) -> dict[int, str]:
    async with maker() as s:
        rows = await s.execute(select(Order.id, Order.status))
        return {int(i): str(st) for i, st in rows.all()}


class OrderMachine(RuleBasedStateMachine):
    env: Env

    def __init__(self) -> None:
        super().__init__()
        self.seeded = self.run(seed(self.maker))
        self.initial = {pid: INITIAL[key] for key, pid in self.seeded.products.items()}
        self.owners = [cart.CartOwner(user=u) for u in self.seeded.customers]
        # The model: each order's status, as predicted from the rules' outcomes.
        self.statuses: dict[int, str] = {}

    @property
    def maker(self) -> async_sessionmaker[AsyncSession]:
        return self.env.maker

    def run(self, coro: Awaitable[T]) -> T:
        return self.env.run(coro)

    def call(self, work: Callable[[AsyncSession], Awaitable[object]]) -> str | None:
        """Run ``work`` in its own unit of work; the domain error's code, or None."""

        async def go() -> str | None:
            try:
                async with UnitOfWork(self.maker) as session:
                    await work(session)
            except AppError as exc:
                return exc.code
            return None

        return self.run(go())

    # Cart rules ---------------------------------------------------------------

    users = st.integers(0, USERS - 1)
    keys = st.sampled_from(sorted(STOCK))

    @rule(u=users, key=keys, units=st.integers(1, 4))
    def add(self, u: int, key: str, units: int) -> None:
        self.do_add(u, key, units)

    def do_add(self, u: int, key: str, units: int) -> str | None:
        pid = self.seeded.products[key]
        error = self.call(lambda s: cart.add_item(s, self.owners[u], pid, units, ttl=TTL))
        assert error in (None, "insufficient_stock")
        return error

    @rule(u=users, units=st.integers(1, 3))
    def fill(self, u: int, units: int) -> None:
        """Every product at once, in one transaction; a product short of stock is skipped
        (its savepoint rolls back). Carts fill up faster than orders drain them."""

        async def work(session: AsyncSession) -> None:
            for pid in self.seeded.products.values():
                with contextlib.suppress(InsufficientStock):
                    async with session.begin_nested():
                        await cart.add_item(session, self.owners[u], pid, units, ttl=TTL)

        assert self.call(work) is None

    def _line(self, data: st.DataObject) -> tuple[int, int]:
        """Half the time an existing cart line, else any (user, product)."""
        existing = [
            (u, pid)
            for u, user in enumerate(self.seeded.customers)
            for pid in sorted(self.run(cart_lines(self.maker, user.id)))
        ]
        anything = [(u, pid) for u in range(USERS) for pid in self.seeded.products.values()]
        pool = st.sampled_from(existing) if existing else st.nothing()
        return data.draw(pool | st.sampled_from(anything))

    @rule(data=st.data(), quantity=st.integers(1, 5))
    def update(self, data: st.DataObject, quantity: int) -> None:
        u, pid = self._line(data)
        error = self.call(lambda s: cart.update_item(s, self.owners[u], pid, quantity, ttl=TTL))
        assert error in (None, "insufficient_stock", "cart_item_not_found")

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        u, pid = self._line(data)
        error = self.call(lambda s: cart.remove_item(s, self.owners[u], pid))
        assert error in (None, "cart_item_not_found")

    @rule(u=users, key=st.none() | keys, reap=st.booleans())
    def expire(self, u: int, key: str | None, reap: bool) -> None:
        self.do_expire(u, None if key is None else self.seeded.products[key], reap)

    def do_expire(self, u: int, pid: int | None, reap: bool) -> None:
        """Time travel: the cart's holds (of one product, or all) lapse; maybe reap them."""
        uid = self.seeded.customers[u].id
        sql = (
            "UPDATE reservations SET reserved_until = now() - interval '1 second'"
            " WHERE cart_id IN (SELECT id FROM carts WHERE user_id = :u)"
            " AND (CAST(:p AS bigint) IS NULL OR product_id = :p)"
        )
        self.call(lambda s: s.execute(text(sql), {"u": uid, "p": pid}))
        if reap:
            self.run(ReservationReaper(self.maker, batch=2).run_once())

    # Order rules --------------------------------------------------------------

    def _create(self, session: AsyncSession, u: int) -> Awaitable[tuple[Order, object, object]]:
        return orders.create_from_cart(
            session,
            self.seeded.customers[u],
            ADDRESS,
            idempotency_key=None,
            gateway_name="simulated",
            card_last4="4242",
            reservation_ttl=TTL,
        )

    def _buyer(self, data: st.DataObject) -> int:
        """Mostly a user whose cart has lines, sometimes anyone (an empty cart: CartEmpty)."""
        filled = [
            u
            for u, user in enumerate(self.seeded.customers)
            if self.run(cart_lines(self.maker, user.id))
        ]
        pool = st.sampled_from(filled) if filled else st.nothing()
        return data.draw(pool | st.integers(0, USERS - 1))

    def _checkout(self, u: int, then: str | None) -> int | None:
        """create_from_cart, then ``then`` (mark_paid / mark_payment_failed / nothing)."""
        uid = self.seeded.customers[u].id
        before = self.run(cart_lines(self.maker, uid))
        created: list[int] = []

        async def work(session: AsyncSession) -> None:
            order, _, _ = await self._create(session, u)
            created.append(order.id)
            if then == "paid":
                await orders.mark_paid(session, order.id, f"sim-{order.id}", None)
            elif then == "payment_failed":
                await orders.mark_payment_failed(
                    session, order.id, "card_declined", self.seeded.customers[u], TTL
                )

        error = self.call(work)
        if not before:
            assert error == "cart_empty"
            return None
        assert error is None
        (order_id,) = created
        self.statuses[order_id] = then or "pending_payment"
        assert self.run(order_lines(self.maker, order_id)) == before
        after = self.run(cart_lines(self.maker, uid))
        # A declined payment hands the units back to the same cart lines.
        assert after == (before if then == "payment_failed" else {})
        return order_id

    @rule(data=st.data())
    def checkout(self, data: st.DataObject) -> None:
        self._checkout(self._buyer(data), "paid")

    @rule(data=st.data())
    def pay_fail(self, data: st.DataObject) -> None:
        self._checkout(self._buyer(data), "payment_failed")

    @rule(data=st.data())
    def place(self, data: st.DataObject) -> None:
        """An order left pending (its payment is still out): its units stay held."""
        self._checkout(self._buyer(data), None)

    def _pick(self, data: st.DataObject, *wanted: str) -> int:
        """Mostly an order in one of the ``wanted`` statuses, sometimes any order."""
        matching = sorted(o for o, s in self.statuses.items() if s in wanted)
        pool = st.sampled_from(matching) if matching else st.nothing()
        return data.draw(pool | st.sampled_from(sorted(self.statuses)))

    def _expect(self, order_id: int, error: str | None, ok: bool, target: str) -> bool:
        if ok:
            assert error is None
            self.statuses[order_id] = target
        else:
            assert error == "invalid_transition"
        return ok

    has_orders = precondition(lambda self: bool(self.statuses))

    @has_orders
    @rule(data=st.data())
    def pay_later(self, data: st.DataObject) -> None:
        self.do_pay_later(self._pick(data, "pending_payment"))

    def do_pay_later(self, oid: int) -> bool:
        error = self.call(lambda s: orders.mark_paid(s, oid, f"late-{oid}", None))
        return self._expect(oid, error, self.statuses[oid] in ("pending_payment", "paid"), "paid")

    @has_orders
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.do_cancel(self._pick(data, "pending_payment", "paid"))

    def do_cancel(self, oid: int) -> bool:
        error = self.call(lambda s: orders.cancel(s, None, oid, "test"))
        return self._expect(
            oid, error, self.statuses[oid] in ("pending_payment", "paid"), "cancelled"
        )

    @has_orders
    @rule(data=st.data(), restock=st.booleans())
    def refund(self, data: st.DataObject, restock: bool) -> None:
        self.do_refund(self._pick(data, "paid"), restock)

    def do_refund(self, oid: int, restock: bool) -> bool:
        """Ship every warehouse's allocation, deliver, refund (restocking or not)."""
        admin = self.seeded.admin

        async def work(session: AsyncSession) -> None:
            warehouses = await session.scalars(
                select(OrderAllocation.warehouse_id)
                .where(OrderAllocation.order_id == oid)
                .distinct()
                .order_by(OrderAllocation.warehouse_id)
            )
            for w in warehouses.all():
                await orders.ship(session, admin, oid, w, f"track-{oid}-{w}")
            await orders.deliver(session, admin, oid)
            await orders.refund(session, admin, oid, restock=restock)

        error = self.call(work)
        return self._expect(oid, error, self.statuses[oid] == "paid", "refunded")

    # Invariants ---------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        found = self.run(violations(self.maker, self.initial))
        assert found == {name: [] for name in found}, found

    @invariant()
    def statuses_match_the_model(self) -> None:
        assert self.run(order_statuses(self.maker)) == self.statuses


MACHINE_SETTINGS = hypothesis_settings(
    max_examples=40,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def run_machine(database_url: str, machine: type[OrderMachine] = OrderMachine) -> None:
    env = Env(database_url)
    machine.env = env
    try:
        run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
    finally:
        env.close()


def test_order_lifecycle_keeps_inventory_books_balanced(settings: Settings) -> None:
    assert settings.database_url
    run_machine(settings.database_url)


def test_every_path_spelled_out(settings: Settings) -> None:
    """Each lifecycle path once, in order (random runs reach some of them rarely)."""
    assert settings.database_url
    env = Env(settings.database_url)
    OrderMachine.env = env
    try:
        m = OrderMachine()
        a, b = m.seeded.products["a"], m.seeded.products["b"]

        def step(outcome: object, expected: object) -> None:
            assert outcome == expected
            m.books_balance()
            m.statuses_match_the_model()

        def stock(pid: int) -> list[tuple[int, int]]:
            return m.run(stock_of(m.maker, pid))

        step(m.do_add(0, "a", 3), None)
        step(m.do_add(0, "b", 2), None)
        step(m.do_add(1, "b", 1), "insufficient_stock")
        step(m.do_add(1, "a", 4), None)
        step(m.do_add(1, "a", 1), "insufficient_stock")
        step(m._checkout(0, "paid"), 1)
        assert (stock(a), stock(b)) == ([(1, 1), (3, 3)], [(0, 0), (0, 0)])
        step(m._checkout(1, "payment_failed"), 2)
        step(m._checkout(1, None), 3)  # pending: cart 1's 4 units of a stay held
        step(m._checkout(1, None), None)  # cart_empty
        step(m.do_add(0, "a", 1), "insufficient_stock")
        step(m.do_cancel(3), True)  # released
        step(m.do_cancel(3), False)
        step(m.do_refund(1, restock=True), True)
        step(m.do_refund(1, restock=True), False)
        assert (stock(a), stock(b)) == ([(4, 0), (3, 0)], [(2, 0), (0, 0)])
        step(m.do_add(0, "a", 2), None)
        step(m._checkout(0, "paid"), 4)
        step(m.do_refund(4, restock=False), True)  # 2 units of a stay sold
        step(m.do_add(1, "b", 2), None)
        step(m._checkout(1, None), 5)
        step(m.do_pay_later(5), True)
        step(m.do_cancel(5), True)  # paid → cancelled: restocked
        step(m.do_add(0, "a", 5), None)  # every unit of a on hand
        m.do_expire(0, None, reap=False)
        step(m.do_add(1, "a", 1), None)  # short: cart 0's lapsed holds are released first
        assert m.run(cart_lines(m.maker, m.seeded.customers[0].id)) == {}
        step(m.do_add(0, "a", 2), None)
        m.do_expire(0, a, reap=True)
        step(m._checkout(0, "paid"), None)  # cart_empty: the reaper emptied it
        step(
            m.run(order_statuses(m.maker)),
            {1: "refunded", 2: "payment_failed", 3: "cancelled", 4: "refunded", 5: "cancelled"},
        )
        assert (stock(a), stock(b)) == ([(2, 0), (3, 1)], [(2, 0), (0, 0)])
    finally:
        env.close()
