"""Property-based fuzzing of every operation in the OpenAPI document: never a 5xx.

The server runs as its own process (as in production) on the test database, with a small
known catalog and an admin token so that write endpoints get past authentication.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from emporium.config import Settings
from tests.fixtures import TOKENS
from tests.server import serve


@pytest.fixture
def server(settings: Settings, catalog: dict[str, Any]) -> Iterator[str]:
    # The server logs no unhandled error while being fuzzed (checked when it stops).
    with serve(settings, settings.data_dir) as base:
        yield base


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
