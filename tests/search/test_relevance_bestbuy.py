"""Relevance on the real Best Buy cell-phone catalog, when the shared data set is present.

The cases are collected only for files that exist, so a checkout without the data set
runs none of them rather than skipping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from emporium.catalog.loader import load_records
from emporium.catalog.sources import read_bestbuy
from emporium.search.indexer import rebuild

DATA = Path(
    os.environ.get("EMPORIUM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
FILES = [p for p in [DATA / "bestbuy_cellphones.json.gz"] if p.exists()]


@pytest.fixture
async def bestbuy(app: FastAPI, request: pytest.FixtureRequest) -> int:
    path: Path = request.param
    stats = await load_records(app.state.sessionmaker, ((r, ()) for r in read_bestbuy(path)))
    _, count = await rebuild(app.state.sessionmaker, app.state.search.index)
    assert stats.products == count == 3291
    return count


async def _titles(client: AsyncClient, **params: Any) -> tuple[dict[str, Any], list[str]]:
    body = (await client.get("/api/v1/search", params={"page_size": 10, **params})).json()
    return body, [i["title"].lower() for i in body["items"]]


# Defined only when the data set is present, so a checkout without it has nothing to skip.
if FILES:

    @pytest.mark.parametrize("bestbuy", FILES, indirect=True)
    async def test_real_catalog_relevance(client: AsyncClient, bestbuy: int) -> None:
        body, titles = await _titles(client, q="iphone 7 case")
        assert body["corrected"] is False
        assert all("iphone" in t and "7" in t and "case" in t for t in titles), titles

        body, titles = await _titles(client, q="samsung galaxy")
        assert all("samsung" in t and "galaxy" in t for t in titles), titles

        body, titles = await _titles(client, q='"screen protector"', brand="ZAGG")
        assert body["total"] > 0
        assert all("screen protector" in t for t in titles), titles

        body, titles = await _titles(client, q="otterbx defender")
        assert body["corrected"] is True
        assert all("otterbox" in t and "defender" in t for t in titles), titles

        body, _ = await _titles(client, q="charger")
        facets = body["facets"]
        assert sum(b["count"] for b in facets["price_range"]) == body["total"]
        assert sum(s["count"] for s in facets["in_stock"]) == body["total"]
        assert facets["category"][0]["count"] >= facets["category"][-1]["count"]

        suggest = (await client.get("/api/v1/search/suggest", params={"q": "otter"})).json()
        assert suggest["suggestions"][0] == {
            "text": "OtterBox",
            "kind": "brand",
            "product_id": None,
        }
        assert all("otter" in s["text"].lower() for s in suggest["suggestions"])
