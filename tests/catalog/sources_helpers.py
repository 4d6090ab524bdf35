"""Shared helpers for the catalog-source tests: record validation and the tiny input files.

The hand-written Best Buy JSON and BigBasket CSV samples, with the exact records and skip
reasons the readers must produce for them, are used by ``test_sources_import``;
:func:`problems` is used by both ``test_sources_demo`` and ``test_sources_import``.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

from emporium.catalog.sources import CatalogRecord


def problems(rec: CatalogRecord) -> list[str]:
    """Everything wrong with a record, as readable strings (empty when valid)."""
    out: list[str] = []
    if not rec.external_ref or rec.external_ref != rec.external_ref.strip():
        out.append("external_ref")
    if not rec.title or rec.title != " ".join(rec.title.split()):
        out.append("title")
    if rec.brand != rec.brand.strip():
        out.append("brand")
    if not rec.seller:
        out.append("seller")
    if not isinstance(rec.category_path, tuple) or not rec.category_path:
        out.append("category_path")
    elif any(not c or c != c.strip() for c in rec.category_path):
        out.append("category_path names")
    if not isinstance(rec.price, Decimal) or rec.price < 0 or rec.price.as_tuple().exponent != -2:
        out.append(f"price {rec.price!r}")
    if rec.rating is not None and (
        not isinstance(rec.rating, Decimal)
        or rec.rating.as_tuple().exponent != -1
        or not Decimal(0) <= rec.rating <= Decimal(5)
    ):
        out.append(f"rating {rec.rating!r}")
    if not isinstance(rec.review_count, int) or rec.review_count < 0:
        out.append("review_count")
    if not isinstance(rec.images, tuple) or any(
        not isinstance(u, str) or not u.startswith(("https://", "http://")) for u in rec.images
    ):
        out.append("images")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in rec.attributes.items()):
        out.append("attributes")
    return out


# ------------------------------------------------------------------- Best Buy (tiny file)

BESTBUY_ITEMS: list[object] = [
    {
        "name": " Speck - CandyShell Grip Case for Apple&#174; iPhone&#174; 6 Plus  - White ",
        "description": "Dual-layer  case.\n Protects your phone&#8217;s edges.",
        "brand": "Speck ",
        "categories": ["Cell Phones", " Cell Phone Accessories ", "iPhone Accessories", ""],
        "price": 19.99,
        "image": "https://cdn-demo.algolia.com/bestbuy-0118/8531002_sb.jpg",
        "popularity": 4524,
    },
    {"name": "No price", "price": None, "image": "https://x.test/1111111_sb.jpg"},
    {"description": "No name at all", "price": 5},
    {
        "name": "Algolia-style record",
        "objectID": "1234567",
        "hierarchicalCategories": {
            "lvl0": "Cell Phones",
            "lvl1": "Cell Phones > Unlocked Cell Phones",
            "lvl2": "",
        },
        "categories": ["Cell Phones", "Unlocked"],
        "price": "99.5",
        "rating": 4.25,
        "type": "HardGood",
        "free_shipping": True,
        "image": "javascript:alert(1)",
    },
    {"name": "Bad price", "price": "abc"},
    {"name": "Negative price", "price": -1},
    {"name": "Duplicate SKU", "price": 1, "image": "https://x.test/8531002_rb.jpg"},
    "not an object",
    {"name": "Rating out of range", "price": 5, "rating": 7, "image": "https://x.test/2_sb.jpg"},
    {"name": "No id anywhere", "price": 0, "categories": []},
]

BESTBUY_EXPECTED = [
    CatalogRecord(
        external_ref="bestbuy-8531002",
        title="Speck - CandyShell Grip Case for Apple® iPhone® 6 Plus - White",
        description="Dual-layer case. Protects your phone’s edges.",
        brand="Speck",
        category_path=("Cell Phones", "Cell Phone Accessories", "iPhone Accessories"),
        price=Decimal("19.99"),
        rating=None,
        review_count=4524,
        images=("https://cdn-demo.algolia.com/bestbuy-0118/8531002_sb.jpg",),
        attributes={"sku": "8531002", "popularity": "4524"},
        seller="Best Buy",
    ),
    CatalogRecord(
        external_ref="bestbuy-1234567",
        title="Algolia-style record",
        description="",
        brand="",
        category_path=("Cell Phones", "Unlocked Cell Phones"),
        price=Decimal("99.50"),
        rating=Decimal("4.3"),
        review_count=0,
        images=(),
        attributes={"type": "HardGood", "free_shipping": "true"},
        seller="Best Buy",
    ),
    CatalogRecord(
        external_ref="bestbuy-row-9",
        title="No id anywhere",
        description="",
        brand="",
        category_path=("Uncategorized",),
        price=Decimal("0.00"),
        rating=None,
        review_count=0,
        images=(),
        attributes={},
        seller="Best Buy",
    ),
]
BESTBUY_REASONS = {
    "missing_price": 1,
    "missing_name": 1,
    "bad_price": 2,
    "duplicate_id": 1,
    "not_an_object": 1,
    "bad_rating": 1,
}


def write_file(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def write_bestbuy(tmp_path: Path, name: str = "bestbuy.json") -> Path:
    return write_file(tmp_path / name, json.dumps(BESTBUY_ITEMS, ensure_ascii=False))


# ------------------------------------------------------------------ BigBasket (tiny file)

BIGBASKET_CSV = (
    "index,product,category,sub_category,brand,sale_price,market_price,type,rating\r\n"
    "1,Garlic Oil - Vegetarian Capsule 500 mg,Beauty & Hygiene,Hair Care,Sri Sri Ayurveda ,"
    "220,220,Hair Oil & Serum,4.1\r\n"
    '2,Water Bottle - Orange,"Kitchen, Garden & Pets",Storage & Accessories,Mastercook,'
    "180,180,Water & Fridge Bottles,\r\n"
    "3,Broken Price Tea,Beverages,Tea,Tetley,abc,100,Tea Bags,4.0\r\n"
    '4,"Pork - Cocktail Skinless \nSausages",Gourmet & World Food,Tinned & Processed Food,'
    "Tulip,350,350,Meats & Sausages,4\r\n"
    "5,,Beverages,Coffee,Cothas Coffee,200,240,Ground Coffee,4.2\r\n"
    "6,  Plain   Rice ,Foodgrains,Rice,,45.5,,Basmati Rice,0\r\n"
    "\r\n"
    "7,Short row,Beverages\r\n"
    "8,Green Tea,Beverages,Tea,Lipton,99.999,120,Tea Bags,3.95\r\n"
    "8,Green Tea again,Beverages,Tea,Lipton,99,120,Tea Bags,3.9\r\n"
    "9,Too Good,Beverages,Tea,Tetley,10,10,Tea Bags,6.2\r\n"
    "x,Bad Index,Beverages,Tea,Tetley,10,10,Tea Bags,\r\n"
)


def _bb(
    index: int,
    title: str,
    path: tuple[str, ...],
    brand: str,
    price: str,
    market: str | None,
    rating: str | None,
    description: str,
) -> CatalogRecord:
    return CatalogRecord(
        external_ref=f"bigbasket-{index}",
        title=title,
        description=description,
        brand=brand,
        category_path=path,
        price=Decimal(price),
        rating=Decimal(rating) if rating is not None else None,
        review_count=0,
        images=(),
        attributes={"market_price": market} if market is not None else {},
        seller="BigBasket",
    )


BIGBASKET_EXPECTED = [
    _bb(
        1,
        "Garlic Oil - Vegetarian Capsule 500 mg",
        ("Beauty & Hygiene", "Hair Care", "Hair Oil & Serum"),
        "Sri Sri Ayurveda",
        "220.00",
        "220.00",
        "4.1",
        "Sri Sri Ayurveda Hair Oil & Serum in Hair Care, Beauty & Hygiene.",
    ),
    _bb(
        2,
        "Water Bottle - Orange",
        ("Kitchen, Garden & Pets", "Storage & Accessories", "Water & Fridge Bottles"),
        "Mastercook",
        "180.00",
        "180.00",
        None,
        "Mastercook Water & Fridge Bottles in Storage & Accessories, Kitchen, Garden & Pets.",
    ),
    _bb(
        4,
        "Pork - Cocktail Skinless Sausages",
        ("Gourmet & World Food", "Tinned & Processed Food", "Meats & Sausages"),
        "Tulip",
        "350.00",
        "350.00",
        "4.0",
        "Tulip Meats & Sausages in Tinned & Processed Food, Gourmet & World Food.",
    ),
    _bb(
        6,
        "Plain Rice",
        ("Foodgrains", "Rice", "Basmati Rice"),
        "",
        "45.50",
        None,
        None,
        "Basmati Rice in Rice, Foodgrains.",
    ),
    _bb(
        8,
        "Green Tea",
        ("Beverages", "Tea", "Tea Bags"),
        "Lipton",
        "100.00",
        "120.00",
        "4.0",
        "Lipton Tea Bags in Tea, Beverages.",
    ),
]
BIGBASKET_REASONS = {
    "bad_price": 1,
    "missing_title": 1,
    "short_row": 1,
    "duplicate_id": 1,
    "bad_rating": 1,
    "bad_index": 1,
}


def write_bigbasket(tmp_path: Path, name: str = "bigbasket.csv") -> Path:
    return write_file(tmp_path / name, BIGBASKET_CSV)
