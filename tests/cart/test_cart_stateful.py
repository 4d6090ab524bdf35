"""Random add / update / remove / expire sequences keep stock and carts consistent.

The machine runs on its own event loop and engine (the app's belong to the test loop) and
predicts every outcome from a plain model: line quantities, and which lines have lapsed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from emporium.cart import service as cart
from emporium.cart.tasks import ReservationReaper
from emporium.config import Settings
from emporium.inventory.reservations import InsufficientStock
from emporium.kit.db import UnitOfWork, create_engine, create_sessionmaker
from emporium.kit.errors import AppError
from tests.cart import assert_reserved_matches, line_rows

T = TypeVar("T")
TTL = timedelta(minutes=30)
CARTS = 2


class Env:
    def __init__(self, database_url: str, products: dict[str, int]) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = self.loop.run_until_complete(self._engine(database_url))
        self.maker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.products = products

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


class CartMachine(RuleBasedStateMachine):
    env: Env

    def __init__(self) -> None:
        super().__init__()
        self.total: dict[int, int] = {}
        self.run(self._reset())
        self.owners = [cart.CartOwner(user=None, guest_token=t) for t in self.tokens]
        self.lines: list[dict[int, int]] = [{} for _ in range(CARTS)]
        self.lapsed: set[tuple[int, int]] = set()

    def run(self, coro: Awaitable[T]) -> T:
        return self.env.run(coro)

    async def _reset(self) -> None:
        self.tokens = [secrets.token_urlsafe(16) for _ in range(CARTS)]
        async with self.env.maker() as s, s.begin():
            await s.execute(text("DELETE FROM reservations"))
            await s.execute(text("DELETE FROM cart_items"))
            await s.execute(text("DELETE FROM carts"))
            await s.execute(text("UPDATE stock SET reserved = 0"))
            for token in self.tokens:
                await s.execute(
                    text("INSERT INTO carts (guest_token_hash) VALUES (:h)"),
                    {"h": cart.hash_cart_token(token)},
                )
            rows = await s.execute(
                text("SELECT product_id, SUM(quantity) FROM stock GROUP BY product_id")
            )
            self.total = {int(p): int(q) for p, q in rows.all()}
            ids = await s.execute(text("SELECT id FROM carts ORDER BY id"))
            self.cart_ids = [int(i) for (i,) in ids.all()]

    # The model --------------------------------------------------------------------

    def _free(self, product_id: int) -> int:
        return self.total[product_id] - sum(lines.get(product_id, 0) for lines in self.lines)

    def _touch(self, c: int) -> None:
        self.lapsed = {(cc, p) for cc, p in self.lapsed if cc != c}

    def _predict_reserve(self, c: int, product_id: int, units: int) -> bool:
        """Whether reserving succeeds; applies the release of lapsed holds it needs."""
        self._touch(c)
        if self._free(product_id) >= units:
            return True
        lapsed = [(cc, p) for cc, p in self.lapsed if p == product_id]
        freed = sum(self.lines[cc][p] for cc, p in lapsed)
        if freed and self._free(product_id) + freed >= units:
            for cc, p in lapsed:
                del self.lines[cc][p]
                self.lapsed.discard((cc, p))
            return True
        return False

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> str | None:
        try:
            async with UnitOfWork(self.env.maker) as session:
                await fn(session, *args, **kwargs)
        except AppError as exc:
            return exc.code
        return None

    # Rules ----------------------------------------------------------------------

    products = st.sampled_from(["sony", "iphone"])

    @rule(c=st.integers(0, CARTS - 1), key=products, units=st.integers(1, 6))
    def add(self, c: int, key: str, units: int) -> None:
        pid = self.env.products[key]
        saved = ([dict(x) for x in self.lines], set(self.lapsed))
        ok = self._predict_reserve(c, pid, units)
        error = self.run(self._call(cart.add_item, self.owners[c], pid, units, ttl=TTL))
        if ok:
            assert error is None
            self.lines[c][pid] = self.lines[c].get(pid, 0) + units
        else:
            assert error == InsufficientStock.code
            self.lines, self.lapsed = saved

    def _target(self, data: st.DataObject) -> tuple[int, int]:
        """Half the time an existing line, else any (cart, product)."""
        existing = sorted((c, p) for c, lines in enumerate(self.lines) for p in lines)
        anything = [(c, p) for c in range(CARTS) for p in sorted(self.env.products.values())]
        pool = st.sampled_from(existing) if existing else st.nothing()
        return data.draw(pool | st.sampled_from(anything))

    @rule(data=st.data(), quantity=st.integers(1, 8))
    def update(self, data: st.DataObject, quantity: int) -> None:
        self.do_update(*self._target(data), quantity)

    def do_update(self, c: int, pid: int, quantity: int) -> None:
        error = self.run(self._call(cart.update_item, self.owners[c], pid, quantity, ttl=TTL))
        current = self.lines[c].get(pid)
        if current is None:
            assert error == "cart_item_not_found"
            return
        saved = ([dict(x) for x in self.lines], set(self.lapsed))
        if quantity > current:
            ok = self._predict_reserve(c, pid, quantity - current)
        else:
            self._touch(c)
            ok = True
        if ok:
            assert error is None
            self.lines[c][pid] = quantity
        else:
            assert error == InsufficientStock.code
            self.lines, self.lapsed = saved

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        c, pid = self._target(data)
        error = self.run(self._call(cart.remove_item, self.owners[c], pid))
        if pid in self.lines[c]:
            assert error is None
            del self.lines[c][pid]
            self.lapsed.discard((c, pid))
        else:
            assert error == "cart_item_not_found"

    @rule(c=st.integers(0, CARTS - 1))
    def view(self, c: int) -> None:
        lines = self.run(self._view(c))
        self._touch(c)
        assert lines == sorted(self.lines[c].items())

    async def _view(self, c: int) -> list[tuple[int, int]]:
        async with UnitOfWork(self.env.maker) as session:
            result = await cart.view(session, self.owners[c], ttl=TTL)
        return sorted((line.product_id, line.quantity) for line in result.lines)

    @rule(data=st.data())
    def lapse(self, data: st.DataObject) -> None:
        """Time travel: the line's holds expire (nobody has reaped them yet)."""
        self.do_lapse(*self._target(data))

    def do_lapse(self, c: int, pid: int) -> None:
        self.run(self._lapse(self.cart_ids[c], pid))
        if pid in self.lines[c]:
            self.lapsed.add((c, pid))

    async def _lapse(self, cart_id: int, product_id: int) -> None:
        async with self.env.maker() as s, s.begin():
            await s.execute(
                text(
                    "UPDATE reservations SET reserved_until = now() - interval '1 second'"
                    " WHERE cart_id = :c AND product_id = :p"
                ),
                {"c": cart_id, "p": product_id},
            )

    @rule()
    def reap(self) -> None:
        released = self.run(ReservationReaper(self.env.maker, batch=2).run_once())
        for c, pid in self.lapsed:
            del self.lines[c][pid]
        assert (released > 0) == bool(self.lapsed)
        self.lapsed = set()

    @invariant()
    def consistent(self) -> None:
        self.run(assert_reserved_matches(self.env.maker))
        expected = sorted(
            (self.cart_ids[c], pid, q)
            for c, lines in enumerate(self.lines)
            for pid, q in lines.items()
        )
        assert self.run(line_rows(self.env.maker)) == expected


def test_cart_state_machine(settings: Settings, catalog: dict[str, Any]) -> None:
    assert settings.database_url
    env = Env(settings.database_url, {k: catalog["product"][k] for k in ("sony", "iphone")})
    CartMachine.env = env
    try:
        run_state_machine_as_test(
            CartMachine,
            settings=hypothesis_settings,
        )
    finally:
        env.close()


def test_a_touch_revives_lapsed_holds_a_reap_takes_the_rest(
    settings: Settings, catalog: dict[str, Any]
) -> None:
    """The sequence random runs reach least often, spelled out."""
    assert settings.database_url
    sony, iphone = catalog["product"]["sony"], catalog["product"]["iphone"]
    env = Env(settings.database_url, {"sony": sony, "iphone": iphone})
    CartMachine.env = env
    try:
        m = CartMachine()
        m.add(0, "sony", 2)
        m.add(0, "iphone", 1)
        m.add(1, "iphone", 5)
        m.do_lapse(0, sony)
        m.do_lapse(1, iphone)
        m.consistent()
        m.do_update(0, iphone, 1)  # touches cart 0: its sony hold is live again
        m.reap()
        m.consistent()
        assert m.lines == [{sony: 2, iphone: 1}, {}]
        m.do_lapse(0, sony)
        m.add(1, "sony", 14)  # short by 1: cart 0's lapsed sony hold is released first
        m.consistent()
        assert m.lines == [{iphone: 1}, {sony: 14}]
    finally:
        env.close()


hypothesis_settings = settings(
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
