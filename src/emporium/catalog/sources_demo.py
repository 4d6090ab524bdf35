"""Generated demo catalog: realistic-looking products, deterministic for a given seed.

Use :func:`emporium.catalog.sources.generate_demo`; this module holds the generator, and
``sources_demo_data`` / ``sources_demo_vocab`` the vocabulary. Each leaf category carries its
own brands, nouns, adjectives, attributes, features and price range, so search, facets and
price buckets behave like a real shop. Nothing is fetched: image URLs are strings for a
placeholder-image service.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from decimal import Decimal

from emporium.catalog.sources import DEMO_WAREHOUSES, CatalogRecord, StockRecord
from emporium.catalog.sources_demo_data import LEAVES
from emporium.catalog.sources_demo_vocab import (
    CLOSING_SENTENCES,
    FIRST_NAMES,
    LAST_NAMES,
    SECOND_SENTENCES,
    SELLERS,
    Leaf,
)

__all__ = ["LEAVES", "MAX_STOCK", "OUT_OF_STOCK_SHARE", "SELLERS", "UNRATED_SHARE", "generate_demo"]

OUT_OF_STOCK_SHARE = 0.10
UNRATED_SHARE = 0.10
MAX_STOCK = 200


def _model(rng: random.Random, leaf: Leaf) -> str:
    if not leaf.models:
        return ""
    pattern = rng.choice(leaf.models)
    return "".join(str(rng.randint(1, 9)) if ch == "#" else ch for ch in pattern)


def _price(rng: random.Random, leaf: Leaf) -> Decimal:
    # Log-uniform within the leaf's range (cheap items are more common), then a retail
    # ending such as 24.99 or 24.49.
    low, high = leaf.price
    dollars = max(1, int(low * (high / low) ** rng.random()))
    cents = rng.choices(("0.99", "0.49", "0.00"), weights=(70, 15, 15))[0]
    if cents == "0.00":
        return Decimal(dollars).quantize(Decimal("0.01"))
    return Decimal(dollars - 1) + Decimal(cents)


def _rating(rng: random.Random) -> tuple[Decimal | None, int]:
    if rng.random() < UNRATED_SHARE:
        return None, 0
    # Beta(5, 1.6) skews toward 4–5 stars, like real storefronts; review counts have a long
    # tail (median about 15, a few in the thousands).
    stars = 1 + 4 * rng.betavariate(5, 1.6)
    reviews = max(1, min(50_000, int(rng.lognormvariate(3.0, 1.6))))
    return Decimal(str(round(stars, 1))), reviews


# Capitalised words that stay capitalised mid-sentence.
_PROPER_WORDS = frozenset({"Bluetooth", "Galaxy", "German", "Japanese-Style", "MagSafe"})
_CAPITALISED = re.compile(r"[A-Z][a-z']+(?:-[A-Za-z][a-z]*)*")


def _lower(phrase: str) -> str:
    # "Wireless Noise Cancelling" -> "wireless noise cancelling", but "USB-C", "4K UHD",
    # "iPhone" and brand-like words keep their case.
    return " ".join(
        w.lower() if _CAPITALISED.fullmatch(w) and w not in _PROPER_WORDS else w
        for w in phrase.split()
    )


def _description(
    rng: random.Random, leaf: Leaf, brand: str, noun: str, adj: str, title: str, author: str
) -> str:
    f1, f2, f3 = rng.sample(leaf.features, 3)
    if leaf.label:
        book = title.rsplit(" (", 1)[0]  # without the "(Paperback)" format
        sentences = [
            f"{book} is a {leaf.label} by {author}, published by {brand}.",
            f"Readers praise its {f1}, {f2} and {f3}.",
        ]
        if rng.random() < 0.6:
            sentences.append(f"Perfect {leaf.use}.")
        return " ".join(sentences)
    # "These headphones feature ..." but "This blender features ...".
    plural = noun.endswith("s") and not noun.endswith("ss")
    this, s = ("These", "") if plural else ("This", "s")
    noun_l = _lower(noun)
    first = rng.choice(
        (
            f"{this} {_lower(adj)} {noun_l} from {brand} feature{s} {f1} and {f2}.",
            f"The {brand} {noun_l} combine{s} {f1} with {f2}.",
            f"{brand} designed {this.lower()} {noun_l} {leaf.use}, with {f1} and {f2}.",
        )
    )
    sentences = [first, rng.choice(SECOND_SENTENCES).format(f=f3)]
    if rng.random() < 0.6:
        # Don't repeat the "for ..." phrase if the first sentence already used it.
        closings = [c for c in CLOSING_SENTENCES if leaf.use not in first or "{use}" not in c]
        closing = rng.choice(closings)
        sentences.append(closing.format(use=leaf.use, years=rng.choice((1, 2, 3))))
    # An empty adjective leaves a double space behind.
    return " ".join(" ".join(sentences).split())


def _stock(rng: random.Random, ref: str) -> list[StockRecord]:
    if rng.random() < OUT_OF_STOCK_SHARE:
        quantities = [0] * len(DEMO_WAREHOUSES)
    else:
        quantities = [rng.randint(0, MAX_STOCK) for _ in DEMO_WAREHOUSES]
        if not any(quantities):  # keep "in stock" products actually in stock
            quantities[rng.randrange(len(quantities))] = rng.randint(1, MAX_STOCK)
    return [
        StockRecord(external_ref=ref, warehouse_code=code, quantity=qty)
        for (code, _), qty in zip(DEMO_WAREHOUSES, quantities, strict=True)
    ]


def _product(rng: random.Random, number: int) -> CatalogRecord:
    ref = f"demo-{number:06d}"
    leaf = rng.choice(LEAVES)
    brand = rng.choice(leaf.brands)
    noun = rng.choice(leaf.nouns)
    adj = rng.choice(leaf.adjectives)
    if adj.lower() in noun.lower():  # avoid "Wireless True Wireless Earbuds"
        adj = ""
    model = _model(rng, leaf)
    attributes = {key: rng.choice(values) for key, values in leaf.attributes}
    author = ""
    if leaf.label:
        author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        attributes["author"] = author
    if model:
        attributes["model"] = model
    variant = attributes[leaf.attributes[0][0]]
    title = " ".join(
        leaf.title.format(brand=brand, model=model, adj=adj, noun=noun, variant=variant).split()
    )
    rating, reviews = _rating(rng)
    return CatalogRecord(
        external_ref=ref,
        title=title,
        description=_description(rng, leaf, brand, noun, adj, title, author),
        brand=brand,
        category_path=leaf.path,
        price=_price(rng, leaf),
        rating=rating,
        review_count=reviews,
        images=tuple(
            f"https://picsum.photos/seed/{ref}-{i}/600/600" for i in range(1, rng.randint(1, 3) + 1)
        ),
        attributes=attributes,
        seller=rng.choices([name for name, _ in SELLERS], weights=[w for _, w in SELLERS])[0],
    )


def _generate(n: int, rng: random.Random) -> Iterator[tuple[CatalogRecord, list[StockRecord]]]:
    for number in range(1, n + 1):
        record = _product(rng, number)
        yield record, _stock(rng, record.external_ref)


def generate_demo(n: int, seed: int = 42) -> Iterator[tuple[CatalogRecord, list[StockRecord]]]:
    """Yield ``n`` demo products (``demo-000001`` …) with stock in every demo warehouse.

    Deterministic for a given seed: all randomness comes from one ``random.Random(seed)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # Not a generator function itself, so a bad n fails here rather than on first next().
    return _generate(n, random.Random(seed))
