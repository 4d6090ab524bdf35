"""Search engine queries: relevance, typos, filters, sorting, facets, hostile input, suggest."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emporium.search.engine import EngineResult, SearchIndex, SearchParams, Suggestion
from tests.search.engine_helpers import (
    ALL,
    BRUTE_PARAMS,
    BY_POPULARITY,
    CATALOG,
    brute,
    ids,
    index_fixture,  # noqa: F401  (the "index" fixture)
    random_doc,
    search,
    shared_fixture,  # noqa: F401  (the "shared" fixture)
    top,
)

# -- relevance -------------------------------------------------------------------


def test_stemming_matches_plural_and_singular(shared: SearchIndex) -> None:
    assert set(ids(search(shared, q="phones"))) == {4, 6, 7}
    assert set(ids(search(shared, q="phone"))) == {4, 6, 7}
    assert search(shared, q="phones").total == 3


def test_quoted_phrase_matches_only_the_phrase(shared: SearchIndex) -> None:
    assert ids(search(shared, q='"wireless charger"')) == [7]
    assert set(ids(search(shared, q="wireless charger"))) == {7, 8}
    assert ids(search(shared, q='"charger wireless"')) == []


def test_title_match_ranks_above_description_match(shared: SearchIndex) -> None:
    result = search(shared, q="headphones")
    assert result.total == 4
    assert set(ids(result)[:3]) == {1, 2, 3}
    # Product 4 is by far the most popular but only its description matches.
    assert ids(result)[3] == 4
    assert result.corrected is False


def test_multi_word_query_needs_every_word(shared: SearchIndex) -> None:
    assert set(ids(search(shared, q="noise headphones"))) == {1, 2, 3}
    assert set(ids(search(shared, q="wireless noise"))) == {2}
    assert ids(search(shared, q="wireless mixer")) == []


def test_brand_is_searchable(shared: SearchIndex) -> None:
    assert ids(search(shared, q="belkin")) == [8]
    assert set(ids(search(shared, q="ANKER"))) == {3, 4}


def test_highlight_marks_title_matches_and_escapes_html(shared: SearchIndex) -> None:
    [hit] = search(shared, q="timer").hits
    assert hit.highlight == "Kitchen <b>Timer</b> &lt;Digital&gt; &amp; Loud"
    [hit] = search(shared, q='"wireless charger"').hits
    assert hit.highlight == "<b>Wireless</b> <b>Charger</b> Pad"
    assert {h.highlight for h in search(shared).hits} == {None}
    # A description-only match still gets the (escaped) title.
    cable = next(h for h in search(shared, q="tablets").hits)
    assert cable.highlight == "Anker USB-C Charging Cable"


def test_hit_fields(shared: SearchIndex) -> None:
    [hit] = search(shared, q="bose").hits
    assert (hit.id, hit.title, hit.brand, hit.category_id) == (
        2,
        "Bose QuietComfort 45 Headphones",
        "Bose",
        3,
    )
    assert (hit.price_cents, hit.rating, hit.in_stock) == (27900, 4.6, False)
    [hit] = search(shared, q="timer").hits
    assert (hit.brand, hit.rating) == ("", 2.5)


# -- typo tolerance ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("samsnug", [6]),
        ("iphnoe", [5]),
        ("kitchneaid", [9]),
        # Distance 2 for long words; equal scores fall back to popularity order.
        ("hedphonse", [3, 1, 2, 4]),
        ("galaxy samsnug", [6]),
    ],
)
def test_typos_are_corrected(shared: SearchIndex, q: str, expected: list[int]) -> None:
    result = search(shared, q=q)
    assert ids(result) == expected
    assert result.total == len(expected)
    assert result.corrected is True


def test_no_correction_for_exact_hits_short_words_or_hopeless_typos(shared: SearchIndex) -> None:
    assert search(shared, q="samsung").corrected is False
    assert ids(search(shared, q="samsung")) == [6]
    for q in ("sny", "zzzzzzzz", "samsnug mixer"):
        result = search(shared, q=q)
        assert (result.total, result.hits, result.corrected) == (0, [], False)


def test_correction_respects_filters(shared: SearchIndex) -> None:
    assert search(shared, q="samsnug", in_stock=False).total == 0
    assert ids(search(shared, q="hedphonse", category_id=2)) == [3, 1, 2]


# -- filters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"category_id": 1}, {1, 2, 3, 4, 5, 6, 7, 8}),
        ({"category_id": 2}, {1, 2, 3}),
        ({"category_id": 6}, {9, 10, 11, 12}),
        ({"category_id": 7}, {9, 10, 11}),
        ({"category_id": 999}, set()),
        ({"brands": ("Anker",)}, {3, 4}),
        ({"brands": ("Anker", "Sony")}, {1, 3, 4}),
        ({"brands": ("anker",)}, set()),
        ({"price_min_cents": 5999, "price_max_cents": 34999}, {1, 2, 3, 10}),
        ({"price_min_cents": 44999}, {5, 6, 9}),
        ({"price_max_cents": 1499}, {4, 11}),
        ({"price_min_cents": 5000, "price_max_cents": 10}, set()),
        ({"rating_min": 4.6}, {1, 2, 5, 6, 9}),
        ({"in_stock": False}, {2, 8}),
        ({"in_stock": True}, {1, 3, 4, 5, 6, 7, 9, 10, 11, 12}),
        ({"q": "noise", "category_id": 2, "in_stock": True}, {1, 3}),
        ({"q": "charger", "brands": ("Belkin",), "price_max_cents": 3999}, {8}),
    ],
)
def test_filters(shared: SearchIndex, params: dict[str, object], expected: set[int]) -> None:
    result = search(shared, **params)
    assert set(ids(result)) == expected
    assert result.total == len(expected)
    assert sum(result.facets.in_stock.values()) == len(expected)


# -- sorting and paging -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price_asc", [4, 11, 7, 12, 8, 3, 10, 2, 1, 9, 5, 6]),
        ("price_desc", [5, 6, 9, 1, 2, 10, 3, 8, 12, 7, 11, 4]),
        ("rating", [9, 5, 1, 6, 2, 4, 3, 8, 10, 11, 12, 7]),
        ("newest", [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        ("relevance", BY_POPULARITY),
    ],
)
def test_sorts(shared: SearchIndex, sort: str, expected: list[int]) -> None:
    assert ids(search(shared, sort=sort)) == expected


def test_sort_applies_to_text_queries(shared: SearchIndex) -> None:
    assert ids(search(shared, q="headphones", sort="price_asc")) == [4, 3, 2, 1]
    assert ids(search(shared, q="headphones", sort="newest")) == [4, 3, 2, 1]
    assert ids(search(shared, q="headphones", sort="rating")) == [1, 2, 4, 3]


def test_pagination(shared: SearchIndex) -> None:
    page = search(shared, sort="price_asc", offset=3, limit=4)
    assert (ids(page), page.total) == ([12, 8, 3, 10], ALL)
    page = search(shared, sort="price_asc", offset=10, limit=5)
    assert (ids(page), page.total) == ([5, 6], ALL)
    page = search(shared, offset=50, limit=5)
    assert (ids(page), page.total) == ([], ALL)
    page = search(shared, limit=0)
    assert (ids(page), page.total) == ([], ALL)
    page = search(shared, offset=10**12, limit=10**12)
    assert (ids(page), page.total) == ([], ALL)
    assert ids(search(shared, offset=-5, limit=10**12)) == BY_POPULARITY
    pages = [i for o in (0, 5, 10) for i in ids(search(shared, offset=o, limit=5))]
    assert pages == BY_POPULARITY
    scored = [i for o in range(4) for i in ids(search(shared, q="hedphonse", offset=o, limit=1))]
    assert scored == [3, 1, 2, 4]


# -- facets ----------------------------------------------------------------------


def test_facets_over_all_matches(shared: SearchIndex) -> None:
    result = search(shared, limit=2)
    assert len(result.hits) == 2
    f = result.facets
    assert f.category == [(3, 3), (5, 3), (7, 3), (4, 2), (6, 1)]
    assert f.brand == [
        ("Anker", 2),
        ("Apple", 1),
        ("Belkin", 1),
        ("Bose", 1),
        ("Generic", 1),
        ("KitchenAid", 1),
        ("Ninja", 1),
        ("Samsung", 1),
        ("Sony", 1),
    ]
    assert list(f.price_range.items()) == [("<25", 3), ("25–50", 2), ("50–100", 2), ("≥100", 5)]
    assert list(f.rating.items()) == [("4+", 7), ("3+", 9), ("2+", 10), ("1+", 11)]
    assert f.in_stock == {"true": 10, "false": 2}


def test_facets_follow_query_and_filters(shared: SearchIndex) -> None:
    f = search(shared, q="headphones", in_stock=True).facets
    assert f.category == [(3, 2), (5, 1)]
    assert f.brand == [("Anker", 2), ("Sony", 1)]
    assert f.price_range == {"<25": 1, "25–50": 0, "50–100": 1, "≥100": 1}
    assert f.rating == {"4+": 3, "3+": 3, "2+": 3, "1+": 3}
    assert f.in_stock == {"true": 3, "false": 0}
    empty = search(shared, q="nothingmatcheshere").facets
    assert (empty.category, empty.brand) == ([], [])
    assert empty.price_range == {"<25": 0, "25–50": 0, "50–100": 0, "≥100": 0}
    assert empty.rating == {"4+": 0, "3+": 0, "2+": 0, "1+": 0}
    assert empty.in_stock == {"true": 0, "false": 0}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_facets_and_totals_match_brute_force(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    truth = {i: random_doc(rng, i) for i in range(1, 401)}
    ix = SearchIndex(tmp_path / "index")
    ix.build_generation([truth[i] for i in range(1, 251)], watermark=0)
    # Several commits leave several segments, which terms aggregations must merge.
    ix.upsert([truth[i] for i in range(251, 331)])
    ix.upsert([truth[i] for i in range(331, 401)])
    changed = [random_doc(rng, i) for i in rng.sample(range(1, 401), 40)]
    ix.upsert(changed)
    truth.update((d.id, d) for d in changed)
    gone = rng.sample(range(1, 401), 25)
    ix.delete(gone)
    for i in gone:
        del truth[i]
    docs = list(truth.values())
    assert ix.doc_count() == len(docs)

    for p in BRUTE_PARAMS:
        expected = brute(docs, p)
        result = ix.search(replace(p, limit=1000))
        assert result.total == len(expected), p
        assert result.corrected is False
        assert sorted(ids(result)) == sorted(d.id for d in expected), p
        f = result.facets
        assert f.category == top(Counter(d.category_id for d in expected)), p
        assert f.brand == top(Counter(d.brand for d in expected if d.brand)), p
        assert f.price_range == {
            "<25": sum(d.price_cents < 2500 for d in expected),
            "25–50": sum(2500 <= d.price_cents < 5000 for d in expected),
            "50–100": sum(5000 <= d.price_cents < 10000 for d in expected),
            "≥100": sum(d.price_cents >= 10000 for d in expected),
        }, p
        assert f.rating == {f"{t}+": sum(d.rating >= t for d in expected) for t in (4, 3, 2, 1)}, p
        assert f.in_stock == {
            "true": sum(d.in_stock for d in expected),
            "false": sum(not d.in_stock for d in expected),
        }, p

    orders = {
        "price_asc": lambda d: (d.price_cents, d.id),
        "price_desc": lambda d: (-d.price_cents, d.id),
        "rating": lambda d: (-d.rating, -d.review_count, d.id),
        "newest": lambda d: (-d.created_ts, -d.id),
        "relevance": lambda d: (-d.review_count, -d.rating, d.id),
    }
    for sort, key in orders.items():
        p = SearchParams(category_id=1, sort=sort, offset=7, limit=60)  # type: ignore[arg-type]
        expected_ids = [d.id for d in sorted(brute(docs, p), key=key)][7:67]
        assert ids(ix.search(p)) == expected_ids, sort
    ix.close()


def test_facet_ties_beyond_the_first_terms_are_cut_by_key(tmp_path: Path) -> None:
    # 100 brands and categories, the first 10 twice: places 11-20 go to ties of one.
    docs = [
        replace(CATALOG[0], id=i + 1, brand=f"B{i % 100:03d}", category_id=500 - i % 100)
        for i in range(110)
    ]
    ix = SearchIndex(tmp_path / "index")
    ix.build_generation(docs[:60], watermark=0)
    ix.upsert(docs[60:])
    f = search(ix).facets
    assert f.brand == [(f"B{i:03d}", 2) for i in range(10)] + [
        (f"B{i:03d}", 1) for i in range(10, 20)
    ]
    assert f.category == [(491 + i, 2) for i in range(10)] + [(401 + i, 1) for i in range(10)]
    ix.close()


# -- hostile input ------------------------------------------------------------------

NASTY = [
    'title:(foo AND "bar',
    "((((",
    'headphones"',
    "*:*",
    "a^2~3",
    "-",
    "AND OR NOT",
    "🎧 \\ / ! ? [ ] { }",
    ": ( ) [ ] { } ^ ~ * ? + - ! \\ / ' \"",
    'title:foo description:"bar baz',
    "x" * 10_000,
    "a " * 5_000,
    "\x00\u200b\ufeff",
    "ß" * 40,
    "/.*/",
    "field:[1 TO 5]",
    "IN [a b]",
    '""',
    '"""',
]


@pytest.mark.parametrize("q", NASTY)
def test_syntax_characters_never_raise(shared: SearchIndex, q: str) -> None:
    assert isinstance(shared.search(SearchParams(q=q)), EngineResult)
    assert isinstance(shared.suggest(q), list)


@pytest.mark.parametrize("q", ["((((", "*:*", "-", "🎧 !", '""', "   "])
def test_query_without_words_is_the_empty_query(shared: SearchIndex, q: str) -> None:
    result = search(shared, q=q)
    assert (result.total, ids(result), result.corrected) == (ALL, BY_POPULARITY, False)


def test_syntax_is_taken_literally(shared: SearchIndex) -> None:
    # Field prefixes are dropped; operators are plain (required) words.
    assert ids(search(shared, q="title:samsung")) == [6]
    assert ids(search(shared, q='title:"wireless charger"')) == [7]
    assert ids(search(shared, q="brand:samsung galaxy")) == [6]
    assert ids(search(shared, q='headphones"')) == ids(search(shared, q="headphones"))
    assert ids(search(shared, q="samsung OR apple")) == []
    assert ids(search(shared, q="-samsung")) == [6]


@settings(max_examples=300, deadline=None)
@given(
    q=st.one_of(
        st.text(max_size=200),
        st.text(alphabet=":()[]{}^~*?+-!\\/'\" ANDORNOTtile:abc", max_size=80),
    )
)
def test_any_text_searches_without_error(shared: SearchIndex, q: str) -> None:
    result = shared.search(SearchParams(q=q, limit=5))
    assert 0 <= len(result.hits) <= min(5, result.total)
    assert len(shared.suggest(q, limit=3)) <= 3


# -- suggest ---------------------------------------------------------------------


def brand(text: str) -> Suggestion:
    return Suggestion(text=text, kind="brand", product_id=None)


def product(text: str, id: int) -> Suggestion:
    return Suggestion(text=text, kind="product", product_id=id)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ank", [brand("Anker"), product("Anker USB-C Charging Cable", 4), product("Anker Soundcore Life Q20 Headphones", 3)]),
        ("ANK", [brand("Anker"), product("Anker USB-C Charging Cable", 4), product("Anker Soundcore Life Q20 Headphones", 3)]),
        ("galaxy", [product("Samsung Galaxy S24", 6), product("Galaxy Projector Night Light", 12)]),
        ("galaxy s2", [product("Samsung Galaxy S24", 6)]),
        ("  Galaxy,  S2 ", [product("Samsung Galaxy S24", 6)]),
        ("wirel", [product("Charger Stand with Wireless Pad", 8), product("Wireless Charger Pad", 7)]),
        ("k", [brand("KitchenAid"), product("KitchenAid Stand Mixer", 9), product("Kitchen Timer <Digital> & Loud", 11)]),
        ("kitchenaid st", [product("KitchenAid Stand Mixer", 9)]),
        ("title:sams", [brand("Samsung"), product("Samsung Galaxy S24", 6)]),
        ("xyz", []),
        ("", []),
        ('"(*', []),
    ],
)  # fmt: skip
def test_suggest(shared: SearchIndex, prefix: str, expected: list[Suggestion]) -> None:
    assert shared.suggest(prefix) == expected


def test_suggest_limit_keeps_room_for_products(shared: SearchIndex) -> None:
    assert shared.suggest("s", limit=4) == [
        brand("Samsung"),
        brand("Sony"),
        product("Anker Soundcore Life Q20 Headphones", 3),
        product("KitchenAid Stand Mixer", 9),
    ]
    assert shared.suggest("s", limit=1) == [brand("Samsung")]
    assert shared.suggest("s", limit=0) == []
    assert shared.suggest("b", limit=4) == [
        brand("Belkin"),
        brand("Bose"),
        product("Bose QuietComfort 45 Headphones", 2),
    ]


def test_suggest_brands_fill_places_products_leave_empty(index: SearchIndex) -> None:
    index.upsert(
        [
            replace(CATALOG[9], id=50 + i, title="Kettle", brand=name)
            for i, name in enumerate(["Acme", "Acorn", "Ace", "Acme"])
        ]
    )
    assert index.suggest("ac", limit=4) == [brand("Acme"), brand("Ace"), brand("Acorn")]
    assert index.suggest("ac", limit=2) == [brand("Acme"), brand("Ace")]


def test_suggest_titles_are_distinct(index: SearchIndex) -> None:
    index.upsert([replace(CATALOG[6], id=13, review_count=50)])
    assert index.suggest("wirel") == [
        product("Wireless Charger Pad", 13),
        product("Charger Stand with Wireless Pad", 8),
    ]
