"""A small, fully known catalog shared by the API and search tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.auth.service import hash_token
from emporium.config import Settings
from emporium.kit.cache import Cache
from emporium.models import Category, Product, Role, Seller, Stock, User, Warehouse

TOKENS = {
    "admin": "test-admin-token",
    "acme": "test-seller-acme",
    "globex": "test-seller-globex",
    "customer": "test-customer",
}

# (key, title, brand, category, price, rating, reviews, seller, (stock W1, W2), description)
PRODUCTS: list[tuple[str, str, str, str, str, str | None, int, str, tuple[int, int], str]] = [
    (
        "sony",
        "Sony WH-1000XM5 Wireless Noise Cancelling Headphones",
        "Sony",
        "headphones",
        "349.99",
        "4.7",
        1200,
        "acme",
        (10, 5),
        "Industry leading noise cancellation, 30 hour battery.",
    ),
    (
        "bose",
        "Bose QuietComfort 45 Headphones",
        "Bose",
        "headphones",
        "279.00",
        "4.5",
        800,
        "acme",
        (0, 0),
        "Comfortable over-ear wireless headphones.",
    ),
    (
        "anker_q20",
        "Anker Soundcore Life Q20 Headphones",
        "Anker",
        "headphones",
        "49.99",
        "4.3",
        3000,
        "globex",
        (100, 0),
        "Hybrid active noise cancelling with deep bass.",
    ),
    (
        "iphone",
        "Apple iPhone 15 Pro 128GB",
        "Apple",
        "phones",
        "999.00",
        "4.8",
        500,
        "globex",
        (3, 3),
        "Titanium design with the A17 Pro chip.",
    ),
    (
        "galaxy",
        "Samsung Galaxy S24 Smartphone",
        "Samsung",
        "phones",
        "799.99",
        "4.6",
        450,
        "globex",
        (7, 0),
        "Galaxy AI and wireless charging.",
    ),
    (
        "cable",
        "Anker USB-C Charging Cable",
        "Anker",
        "phones",
        "12.99",
        "4.1",
        5000,
        "acme",
        (50, 50),
        "Braided cable for charging headphones and phones.",
    ),
    (
        "mixer",
        "KitchenAid Artisan Stand Mixer",
        "KitchenAid",
        "kitchen",
        "429.00",
        "4.9",
        2000,
        "acme",
        (2, 0),
        "Five quart stainless steel bowl.",
    ),
    (
        "coffee",
        "Ninja Coffee Maker",
        "Ninja",
        "kitchen",
        "89.99",
        "3.9",
        700,
        "globex",
        (0, 4),
        "Brews hot or iced coffee.",
    ),
    (
        "timer",
        "Kitchen Timer",
        "",
        "kitchen",
        "24.99",
        None,
        0,
        "globex",
        (1, 0),
        "A simple mechanical timer.",
    ),
]

# slug -> (name, parent slug)
CATEGORIES = {
    "electronics": ("Electronics", None),
    "audio": ("Audio", "electronics"),
    "headphones": ("Headphones", "audio"),
    "phones": ("Phones", "electronics"),
    "home": ("Home", None),
    "kitchen": ("Kitchen", "home"),
}


async def build_catalog(maker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    ids: dict[str, Any] = {"category": {}, "product": {}, "seller": {}, "warehouse": {}, "user": {}}
    async with maker() as session, session.begin():
        for key, name in (("acme", "Acme Corp"), ("globex", "Globex")):
            seller = Seller(name=name, slug=key)
            session.add(seller)
            await session.flush()
            ids["seller"][key] = seller.id
        for code in ("W1", "W2"):
            wh = Warehouse(code=code, name=f"Warehouse {code}")
            session.add(wh)
            await session.flush()
            ids["warehouse"][code] = wh.id
        paths: dict[str, str] = {}
        for slug, (name, parent) in CATEGORIES.items():
            cat = Category(
                name=name,
                slug=slug,
                parent_id=ids["category"][parent] if parent else None,
                depth=0 if parent is None else paths[parent].count("/") - 1,
            )
            session.add(cat)
            await session.flush()
            cat.path = (paths[parent] if parent else "/") + f"{cat.id}/"
            paths[slug] = cat.path
            ids["category"][slug] = cat.id
        for key, title, brand, cat, price, rating, reviews, seller, stock, desc in PRODUCTS:
            product = Product(
                title=title,
                brand=brand,
                description=desc,
                category_id=ids["category"][cat],
                price=Decimal(price),
                rating=Decimal(rating) if rating else None,
                review_count=reviews,
                seller_id=ids["seller"][seller],
                images=[f"https://img.example/{key}.jpg"],
                attributes={"key": key},
            )
            session.add(product)
            await session.flush()
            ids["product"][key] = product.id
            for code, qty in zip(("W1", "W2"), stock, strict=True):
                session.add(
                    Stock(product_id=product.id, warehouse_id=ids["warehouse"][code], quantity=qty)
                )
        for key, role, seller in (
            ("admin", Role.admin, None),
            ("acme", Role.seller, "acme"),
            ("globex", Role.seller, "globex"),
            ("customer", Role.customer, None),
        ):
            user = User(
                email=f"{key}@example.com",
                name=key,
                role=role.value,
                seller_id=ids["seller"][seller] if seller else None,
                api_token_hash=hash_token(TOKENS[key]),
            )
            session.add(user)
            await session.flush()
            ids["user"][key] = user.id
    return ids


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@asynccontextmanager
async def valkey_unreachable(app: FastAPI) -> AsyncIterator[None]:
    """The app talks to a Valkey that cannot be reached (nothing listens on the discard
    port) inside the block, and to its own again after."""
    live = app.state.cache
    app.state.cache = Cache("redis://127.0.0.1:9/0")
    try:
        yield
    finally:
        await app.state.cache.close()
        app.state.cache = live


def command_env(settings: Settings) -> dict[str, str]:
    """The environment for running an ``emporium`` command as a separate process on the
    test's database, Valkey and data directory."""
    return {
        **os.environ,
        "EMPORIUM_DATABASE_URL": str(settings.database_url),
        "EMPORIUM_VALKEY_URL": str(settings.valkey_url),
        "EMPORIUM_DATA_DIR": str(settings.data_dir),
    }
