"""`emporium serve --workers N`: several processes, one set of metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from emporium.config import Settings
from tests.test_openapi_fuzz import _free_port

HEALTH = 'emporium_http_requests_total{method="GET",route="/api/health",status="200"}'


@pytest.fixture
def two_workers(settings: Settings, catalog: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "EMPORIUM_DATABASE_URL": str(settings.database_url),
        "EMPORIUM_VALKEY_URL": str(settings.valkey_url),
        "EMPORIUM_DATA_DIR": str(tmp_path / "data"),
        "EMPORIUM_LOG_LEVEL": "WARNING",
        "EMPORIUM_DB_POOL_SIZE": "4",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "emporium", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield base
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
        assert "request.unhandled_error" not in stderr


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
