"""Property-based fuzzing of every operation in the OpenAPI document: never a 5xx.

The server runs as its own process (as in production) on the test database, with a small
known catalog and an admin token so that write endpoints get past authentication.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from emporium.config import Settings
from tests.fixtures import TOKENS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings: Settings, catalog: dict[str, Any]) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "EMPORIUM_DATABASE_URL": str(settings.database_url),
        "EMPORIUM_VALKEY_URL": str(settings.valkey_url),
        "EMPORIUM_DATA_DIR": str(settings.data_dir),
        "EMPORIUM_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "emporium", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
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
        _, stderr = proc.communicate(timeout=30)
        # The server logged no unhandled error while being fuzzed.
        assert "request.unhandled_error" not in stderr


def test_no_operation_returns_5xx(server: str) -> None:
    api = schemathesis.openapi.from_url(f"{server}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKENS['admin']}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        fuzz()
