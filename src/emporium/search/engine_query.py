"""Schema, text analysis, query building and facet parsing for the Tantivy index.

User text never reaches Tantivy's query parser: it is cut into plain words and quoted
phrases here and turned into term, phrase and fuzzy queries directly, so no input can be
a syntax error.
"""

from __future__ import annotations

import html
import math
import re
import threading
from collections.abc import Sequence
from typing import Any

import tantivy

from emporium.search.engine_types import (
    FACET_SIZE,
    PRICE_RANGES,
    RATING_THRESHOLDS,
    Facets,
    SearchDoc,
    SearchParams,
    Sort,
    Suggestion,
)

SCHEMA_VERSION = 1
MAX_QUERY_CHARS = 2000
MAX_CLAUSES = 24
# The built-in tokenizers drop tokens longer than this, so longer words can never match.
MAX_TERM_BYTES = 40
FIELD_BOOSTS: tuple[tuple[str, float], ...] = (
    ("title", 3.0),
    ("brand_text", 2.0),
    ("description", 1.0),
)
STEMMED_FIELDS = frozenset({"title", "description"})
# Terms aggregations return every term of a segment up to this many, so counts are exact.
SEGMENT_SIZE = 1 << 20
TERMS_PROBE = 64
# How many popular matches autocomplete reads while collecting distinct titles.
SUGGEST_SCAN = 500

# Composite u64 sort keys: one order_by_field gives a total, deterministic order
# (ties end on the product id) that matches the PostgreSQL fallback.
ID_BITS = 30
ID_MAX = (1 << ID_BITS) - 1
COUNT_MAX = (1 << 24) - 1
RATING_MAX = (1 << 10) - 1
WIDE_MAX = (1 << 34) - 1
SORT_KEYS = ("k_pop", "k_rating", "k_price_asc", "k_price_desc", "k_newest")
SORT_FIELDS: dict[Sort, tuple[str, Any]] = {
    "relevance": ("k_pop", tantivy.Order.Desc),
    "price_asc": ("k_price_asc", tantivy.Order.Asc),
    "price_desc": ("k_price_desc", tantivy.Order.Desc),
    "rating": ("k_rating", tantivy.Order.Desc),
    "newest": ("k_newest", tantivy.Order.Desc),
}

_FIELD_PREFIX = re.compile(r"[^\W\d_][\w.]*:(?=\S)")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def build_schema() -> Any:
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("id", stored=True, indexed=True, fast=True)
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem")
    # Unstemmed copy for typo correction and autocomplete prefixes.
    sb.add_text_field("title_words", tokenizer_name="default", index_option="basic")
    sb.add_text_field("description", tokenizer_name="en_stem")
    sb.add_text_field("brand", stored=True, fast=True, tokenizer_name="raw")
    sb.add_text_field("brand_text", tokenizer_name="default")
    sb.add_text_field("brand_key", tokenizer_name="raw")
    sb.add_unsigned_field("category_id", stored=True, fast=True)
    sb.add_unsigned_field("category_ancestors", indexed=True)
    sb.add_integer_field("price_cents", stored=True, indexed=True, fast=True)
    sb.add_float_field("rating", stored=True, indexed=True, fast=True)
    sb.add_unsigned_field("review_count", fast=True)
    sb.add_boolean_field("in_stock", stored=True, indexed=True, fast=True)
    sb.add_integer_field("created_ts", fast=True)
    for key in SORT_KEYS:
        sb.add_unsigned_field(key, fast=True)
    return sb.build()


SCHEMA = build_schema()


class _Analyzers(threading.local):
    # Same chain as the built-in "default" and "en_stem" tokenizers, without the
    # long-token filter so an over-long word stays in the query and matches nothing.
    def __init__(self) -> None:
        self.words = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.lowercase())
            .build()
        )
        self.stem = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.stemmer("english"))
            .build()
        )


_analyzers = _Analyzers()


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` as the index tokenizes them; field prefixes dropped."""
    return list(_analyzers.words.analyze(_FIELD_PREFIX.sub(" ", text)))


def stem(word: str) -> str:
    out = _analyzers.stem.analyze(word)
    return str(out[0]) if out else word


def clauses(q: str) -> list[tuple[str, ...]]:
    """Plain words and balanced quoted phrases of ``q``; each clause is a tuple of words."""
    parts = _FIELD_PREFIX.sub(" ", q[:MAX_QUERY_CHARS]).split('"')
    if len(parts) % 2 == 0:
        # An odd number of quotes: the last one has no partner and quotes nothing.
        parts[-2:] = [parts[-2] + " " + parts[-1]]
    out: list[tuple[str, ...]] = []
    for i, part in enumerate(parts):
        found = words(part)
        if i % 2:
            if found:
                out.append(tuple(found))
        else:
            out.extend((w,) for w in found)
    return list(dict.fromkeys(out))[:MAX_CLAUSES]


def brand_key(brand: str) -> str:
    return " ".join(words(brand))


def _boost(query: Any, boost: float) -> Any:
    return query if boost == 1.0 else tantivy.Query.boost_query(query, boost)


def _bool(occur: Any, queries: Sequence[Any]) -> Any:
    return tantivy.Query.boolean_query([(occur, q) for q in queries])


def _clause_query(schema: Any, clause: tuple[str, ...]) -> Any:
    stems = tuple(stem(w) for w in clause)
    alternatives = []
    for field, boost in FIELD_BOOSTS:
        terms = stems if field in STEMMED_FIELDS else clause
        if len(terms) == 1:
            query = tantivy.Query.term_query(schema, field, terms[0])
        else:
            # A one-word phrase query panics inside Tantivy; only phrases reach here.
            query = tantivy.Query.phrase_query(schema, field, list(terms))
        alternatives.append(_boost(query, boost))
    return _bool(tantivy.Occur.Should, alternatives)


def text_query(schema: Any, found: Sequence[tuple[str, ...]]) -> Any:
    return _bool(tantivy.Occur.Must, [_clause_query(schema, c) for c in found])


def fuzzy_distance(clause: tuple[str, ...]) -> int:
    if len(clause) != 1:
        return 0
    word = clause[0]
    if len(word) < 4 or len(word.encode()) > MAX_TERM_BYTES:
        return 0
    return 1 if len(word) <= 7 else 2


def fuzzy_query(schema: Any, found: Sequence[tuple[str, ...]]) -> Any | None:
    """The query with typo-tolerant words, or None when no word qualifies."""
    parts = []
    changed = False
    for clause in found:
        distance = fuzzy_distance(clause)
        if not distance:
            parts.append(_clause_query(schema, clause))
            continue
        changed = True
        word = clause[0]

        def fuzzy(field: str, text: str, distance: int = distance) -> Any:
            return tantivy.Query.fuzzy_term_query(schema, field, text, distance, True)

        parts.append(
            _bool(
                tantivy.Occur.Should,
                [
                    _boost(fuzzy("title_words", word), 3.0),
                    _boost(fuzzy("brand_text", word), 2.0),
                    # Descriptions are only indexed stemmed: compare stems there.
                    fuzzy("description", stem(word)),
                ],
            )
        )
    return _bool(tantivy.Occur.Must, parts) if changed else None


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def filter_queries(schema: Any, p: SearchParams) -> list[Any]:
    Q = tantivy.Query
    out: list[Any] = []
    if p.category_id is not None:
        valid = 0 <= p.category_id < (1 << 64)
        out.append(
            Q.term_query(schema, "category_ancestors", p.category_id) if valid else Q.empty_query()
        )
    if p.brands:
        names = sorted({b for b in p.brands if b})
        out.append(Q.term_set_query(schema, "brand", names) if names else Q.empty_query())
    lo, hi = p.price_min_cents, p.price_max_cents
    if lo is not None or hi is not None:
        lo = None if lo is None else _clamp(lo, _I64_MIN, _I64_MAX)
        hi = None if hi is None else _clamp(hi, _I64_MIN, _I64_MAX)
        if lo is not None and hi is not None and lo > hi:
            out.append(Q.empty_query())
        else:
            out.append(Q.range_query(schema, "price_cents", tantivy.FieldType.Integer, lo, hi))
    if p.rating_min is not None and not math.isnan(p.rating_min):
        out.append(
            Q.range_query(schema, "rating", tantivy.FieldType.Float, float(p.rating_min), None)
        )
    if p.in_stock is not None:
        out.append(Q.term_query(schema, "in_stock", p.in_stock))
    return out


def combine(text: Any | None, filters: Sequence[Any]) -> Any:
    if not filters:
        return text if text is not None else tantivy.Query.all_query()
    # Filters score zero so they never change the ranking.
    parts = [tantivy.Query.const_score_query(f, 0.0) for f in filters]
    if text is not None:
        parts.insert(0, text)
    return _bool(tantivy.Occur.Must, parts)


def title_prefix_query(schema: Any, found: Sequence[str]) -> Any:
    """Titles with every word but the last, and a word starting with the last one."""
    parts = [tantivy.Query.term_query(schema, "title_words", w) for w in found[:-1]]
    parts.append(tantivy.Query.regex_query(schema, "title_words", regex_prefix(found[-1])))
    return _bool(tantivy.Occur.Must, parts)


def regex_prefix(text: str) -> str:
    # Analyzed words are alphanumeric; escape any ASCII punctuation defensively.
    escaped = "".join("\\" + c if c.isascii() and not c.isalnum() and c != " " else c for c in text)
    return escaped + ".*"


def sort_keys(d: SearchDoc) -> dict[str, int]:
    ident = _clamp(d.id, 0, ID_MAX)
    inverse = ID_MAX - ident
    count = _clamp(d.review_count, 0, COUNT_MAX)
    rating = _clamp(round(d.rating * 100), 0, RATING_MAX) if math.isfinite(d.rating) else 0
    price = _clamp(d.price_cents, 0, WIDE_MAX)
    created = _clamp(d.created_ts, 0, WIDE_MAX)
    return {
        "k_pop": count << 40 | rating << ID_BITS | inverse,
        "k_rating": rating << 54 | count << ID_BITS | inverse,
        "k_price_asc": price << ID_BITS | ident,
        "k_price_desc": price << ID_BITS | inverse,
        "k_newest": created << ID_BITS | ident,
    }


def to_document(d: SearchDoc) -> Any:
    doc = tantivy.Document()
    doc.add_unsigned("id", d.id)
    doc.add_text("title", d.title)
    doc.add_text("title_words", d.title)
    doc.add_text("description", d.description)
    if d.brand:
        doc.add_text("brand", d.brand)
        doc.add_text("brand_text", d.brand)
        doc.add_text("brand_key", brand_key(d.brand))
    doc.add_unsigned("category_id", d.category_id)
    for ancestor in dict.fromkeys((*d.category_ancestors, d.category_id)):
        doc.add_unsigned("category_ancestors", ancestor)
    doc.add_integer("price_cents", d.price_cents)
    doc.add_float("rating", float(d.rating))
    doc.add_unsigned("review_count", max(d.review_count, 0))
    doc.add_boolean("in_stock", d.in_stock)
    doc.add_integer("created_ts", d.created_ts)
    for name, value in sort_keys(d).items():
        doc.add_unsigned(name, value)
    return doc


def _terms(field: str, size: int) -> dict[str, Any]:
    return {"terms": {"field": field, "size": size, "segment_size": SEGMENT_SIZE}}


def facet_aggs(size: int = TERMS_PROBE) -> dict[str, Any]:
    price = []
    for i, (_, lo, hi) in enumerate(PRICE_RANGES):
        bucket: dict[str, Any] = {"key": f"p{i}"}
        if lo is not None:
            bucket["from"] = lo
        if hi is not None:
            bucket["to"] = hi
        price.append(bucket)
    # Tantivy refuses overlapping ranges: count disjoint ones and add them up.
    thresholds = sorted(t for _, t in RATING_THRESHOLDS)
    rating = [
        {"key": f"r{t}", "from": float(t), **({"to": float(n)} if n is not None else {})}
        for t, n in zip(thresholds, [*thresholds[1:], None], strict=True)
    ]
    return {
        "total": {"value_count": {"field": "id"}},
        "category": _terms("category_id", size),
        "brand": _terms("brand", size),
        "price": {"range": {"field": "price_cents", "ranges": price}},
        "rating": {"range": {"field": "rating", "ranges": rating}},
        "in_stock": {"terms": {"field": "in_stock", "size": 2}},
    }


def top_terms(agg: dict[str, Any], size: int, key: type) -> tuple[list[Any], bool]:
    """The top FACET_SIZE (key, count) pairs by count desc then key, and whether exact."""
    buckets = agg.get("buckets", [])
    items = sorted(
        ((key(b["key"]), int(b["doc_count"])) for b in buckets if b["key"] != ""),
        key=lambda kv: (-kv[1], kv[0]),
    )
    # Tantivy keeps `size` terms and breaks count ties its own way; the cut is safe
    # only when everything dropped counts less than the last term we keep.
    exact = len(buckets) < size or (
        len(items) > FACET_SIZE and items[FACET_SIZE - 1][1] > items[-1][1]
    )
    return items[:FACET_SIZE], exact


def _bucket_counts(agg: dict[str, Any]) -> dict[str, int]:
    return {str(b["key"]): int(b["doc_count"]) for b in agg.get("buckets", [])}


def parse_facets(result: dict[str, Any], size: int) -> tuple[int, Facets, bool]:
    """(total, facets, exact): exact is False when a terms facet may have been cut."""
    category, cat_exact = top_terms(result["category"], size, int)
    brand, brand_exact = top_terms(result["brand"], size, str)
    price = _bucket_counts(result["price"])
    rating = _bucket_counts(result["rating"])
    running = 0
    cumulative: dict[str, int] = {}
    for name, threshold in sorted(RATING_THRESHOLDS, key=lambda kv: -kv[1]):
        running += rating.get(f"r{threshold}", 0)
        cumulative[name] = running
    stock = {"true": 0, "false": 0}
    for b in result["in_stock"].get("buckets", []):
        flag = b.get("key_as_string", str(bool(b["key"])).lower())
        stock["true" if flag in ("true", "1") else "false"] += int(b["doc_count"])
    facets = Facets(
        category=category,
        brand=brand,
        price_range={name: price.get(f"p{i}", 0) for i, (name, _, _) in enumerate(PRICE_RANGES)},
        rating={name: cumulative[name] for name, _ in RATING_THRESHOLDS},
        in_stock=stock,
    )
    total = int(result["total"].get("value") or 0)
    return total, facets, cat_exact and brand_exact


def highlight(snippet: Any, title: str) -> str:
    """The whole title, HTML-escaped, with the snippet's matches in <b>..</b>."""
    ranges = sorted((r.start, r.end) for r in snippet.highlighted())
    if not ranges:
        return html.escape(title)
    raw = title.encode()
    base = snippet.fragment_range().start
    out: list[str] = []
    pos = 0
    for start, end in ranges:
        start, end = base + start, base + end
        if start < pos or end > len(raw):
            continue
        out.append(html.escape(raw[pos:start].decode(errors="replace")))
        out.append("<b>" + html.escape(raw[start:end].decode(errors="replace")) + "</b>")
        pos = end
    out.append(html.escape(raw[pos:].decode(errors="replace")))
    return "".join(out)


def brand_suggestions(searcher: Any, schema: Any, found: list[str], limit: int) -> list[Suggestion]:
    """Brands whose normalized name starts with the words, most products first."""
    query = tantivy.Query.regex_query(schema, "brand_key", regex_prefix(" ".join(found)))
    size = max(limit * 4, 64)
    result = searcher.aggregate(query, {"brand": _terms("brand", size)})["brand"]
    names = sorted(
        ((str(b["key"]), int(b["doc_count"])) for b in result.get("buckets", [])),
        key=lambda kv: (-kv[1], kv[0]),
    )
    return [Suggestion(text=n, kind="brand", product_id=None) for n, _ in names if n][:limit]


def title_suggestions(searcher: Any, schema: Any, found: list[str], limit: int) -> list[Suggestion]:
    """Distinct titles matching the words (the last one as a prefix), most popular first."""
    query = title_prefix_query(schema, found)
    out: list[Suggestion] = []
    seen: set[str] = set()
    batch = max(limit * 3, 30)
    offset = 0
    while len(out) < limit and offset < SUGGEST_SCAN:
        hits = searcher.search(
            query,
            batch,
            count=False,
            order_by_field="k_pop",
            offset=offset,
            order=tantivy.Order.Desc,
        ).hits
        for _, address in hits:
            doc = searcher.doc(address)
            title = str(doc.get_first("title") or "")
            if title.casefold() in seen:
                continue
            seen.add(title.casefold())
            out.append(Suggestion(text=title, kind="product", product_id=int(doc.get_first("id"))))
            if len(out) == limit:
                break
        if len(hits) < batch:
            break
        offset += batch
    return out
