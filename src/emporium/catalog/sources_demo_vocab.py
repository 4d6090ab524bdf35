"""Building blocks of the demo-catalog vocabulary (see :mod:`emporium.catalog.sources_demo_data`).

The :class:`Leaf` record and its compact builder :func:`leaf`, plus the small word lists:
marketplace sellers, author names and description sentence templates.
"""

from __future__ import annotations

from dataclasses import dataclass

# (name, weight): a few big sellers and a long tail, like a marketplace.
SELLERS: tuple[tuple[str, int], ...] = (
    ("Emporium Direct", 30),
    ("Northwind Traders", 15),
    ("Brightline Electronics", 12),
    ("Maple & Main", 10),
    ("Summit Outfitters", 10),
    ("Urban Nest Home", 9),
    ("Blue Harbor Goods", 8),
    ("Evergreen Market", 6),
)


@dataclass(frozen=True, slots=True)
class Leaf:
    path: tuple[str, ...]
    brands: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    price: tuple[int, int]  # whole dollars, low and high
    features: tuple[str, ...]
    use: str  # "for ..." phrase
    attributes: tuple[tuple[str, tuple[str, ...]], ...]  # the first one names the variant
    models: tuple[str, ...]  # model-number patterns, "#" becomes a digit; () for none
    title: str  # format with {brand} {model} {adj} {noun} {variant}
    label: str  # what a book is ("novel"); "" for other products


_PRODUCT_TITLE = "{brand} {model} {adj} {noun}, {variant}"


def _split(text: str) -> tuple[str, ...]:
    # "|"-separated strings keep the vocabulary table (``sources_demo_data``) compact and readable.
    return tuple(part.strip() for part in text.split("|") if part.strip())


def leaf(
    path: str,
    *,
    price: tuple[int, int],
    brands: str,
    nouns: str,
    adjectives: str,
    features: str,
    use: str,
    attributes: dict[str, str],
    models: str = "",
    title: str = _PRODUCT_TITLE,
    label: str = "",
) -> Leaf:
    return Leaf(
        path=tuple(p.strip() for p in path.split(">")),
        brands=_split(brands),
        nouns=_split(nouns),
        adjectives=_split(adjectives),
        price=price,
        features=_split(features),
        use=use,
        attributes=tuple((key, _split(values)) for key, values in attributes.items()),
        models=_split(models),
        title=title,
        label=label,
    )


FIRST_NAMES = _split(
    "Amelia|Daniel|Priya|Marcus|Elena|Samuel|Hannah|Kenji|Olivia|Rafael|Grace|Tomas|Nadia|Owen|"
    "Leila|Victor|Clara|Isaac|Maya|Jonah"
)
LAST_NAMES = _split(
    "Hart|Okafor|Lindqvist|Moreno|Chen|Whitaker|Novak|Sato|Bennett|Haddad|Ellison|Rivera|Kowalski|"
    "Fairchild|Mendel|Abernathy|Quinn|Castellano"
)
SECOND_SENTENCES = (
    "Highlights include {f}.",
    "You also get {f}.",
    "Thoughtful extras include {f}.",
)
CLOSING_SENTENCES = (
    "Ideal {use}.",
    "A dependable pick {use}.",
    "Backed by a {years}-year limited warranty.",
    "Ships in recyclable packaging.",
)
