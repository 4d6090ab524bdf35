"""`emporium serve --workers N`: several processes, one set of metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from emporium.config import Settings
from tests.server import serve

HEALTH = 'emporium_http_requests_total{method="GET",route="/api/health",status="200"}'


@pytest.fixture
def two_workers(settings: Settings, catalog: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    with serve(settings, tmp_path / "data", workers=2) as base:
        yield base


def _health_count(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(HEALTH)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_the_requests_of_every_worker(two_workers: str) -> None:
    before = _health_count(two_workers)

    def hit(_: int) -> int:
        # A new connection each time, so the kernel spreads them over both processes.
        with httpx.Client() as client:
            return client.get(f"{two_workers}/api/health", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(hit, range(200)))
    assert statuses == [200] * 200
    # Whichever process answers /metrics, it reports the sum over both.
    assert [_health_count(two_workers) - before for _ in range(6)] == [200.0] * 6
