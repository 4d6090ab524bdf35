"""A DirectRoute answers and documents as FastAPI's own route with the same signature."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StrictInt

from emporium.kit.errors import Unauthorized, install_error_handlers
from emporium.kit.routing import DirectRoute, caller_first
from emporium.kit.schemas import CleanStr


class Line(BaseModel):
    product_id: StrictInt = Field(gt=0)
    quantity: StrictInt = Field(ge=1, le=1000)


async def endpoint(
    request: Request,
    body: Line,
    key: Annotated[CleanStr, Header(alias="Idempotency-Key", min_length=1, max_length=8)],
    basket: Annotated[str | None, Cookie(max_length=4)] = None,
) -> Response:
    seen = {"line": body.model_dump(), "key": key, "basket": basket, "path": request.url.path}
    return Response(str(seen), media_type="text/plain")


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    plain = APIRouter()
    direct = APIRouter(route_class=DirectRoute)
    plain.post("/plain")(endpoint)
    direct.post("/direct")(endpoint)
    app.include_router(plain)
    app.include_router(direct)
    return app


CASES: list[tuple[str, dict[str, Any]]] = [
    ("valid", {"json": {"product_id": 3, "quantity": 2}, "headers": {"Idempotency-Key": "k1"}}),
    (
        "valid with cookie",
        {
            "json": {"product_id": 3, "quantity": 2},
            "headers": {"Idempotency-Key": "k1", "Cookie": "basket=ab"},
        },
    ),
    ("no body", {"headers": {"Idempotency-Key": "k1"}}),
    (
        "malformed JSON",
        {
            "content": b'{"product_id": 3,',
            "headers": {"Idempotency-Key": "k1", "Content-Type": "application/json"},
        },
    ),
    (
        "unreadable: not UTF-8",
        {
            "content": b'{"product_id": 3, "quantity": 2, "x": "\xff\xfe"}',
            "headers": {"Idempotency-Key": "k1", "Content-Type": "application/json"},
        },
    ),
    (
        "unreadable: nested too deep",
        {
            "content": b"[" * 100_000 + b"]" * 100_000,
            "headers": {"Idempotency-Key": "k1", "Content-Type": "application/json"},
        },
    ),
    (
        "wrong types",
        {"json": {"product_id": "3", "quantity": 0}, "headers": {"Idempotency-Key": "k"}},
    ),
    (
        "extra and missing fields",
        {"json": {"quantity": 2, "x": 1}, "headers": {"Idempotency-Key": "k"}},
    ),
    ("a list", {"json": [1, 2], "headers": {"Idempotency-Key": "k"}}),
    (
        "not JSON",
        {
            "content": b"product_id=3",
            "headers": {"Idempotency-Key": "k1", "Content-Type": "text/plain"},
        },
    ),
    (
        "no content type",
        {"content": b'{"product_id": 3, "quantity": 2}', "headers": {"Idempotency-Key": "k1"}},
    ),
    (
        "valid, a JSON subtype",
        {
            "content": b'{"product_id": 3, "quantity": 2}',
            "headers": {"Idempotency-Key": "k1", "Content-Type": "application/merge+json"},
        },
    ),
    ("no header", {"json": {"product_id": 3, "quantity": 2}}),
    (
        "header and cookie too long, body wrong",
        {
            "json": {"product_id": -1, "quantity": 2},
            "headers": {"Idempotency-Key": "k" * 9, "Cookie": "basket=abcde"},
        },
    ),
    (
        "NUL in the header",
        {"json": {"product_id": 3, "quantity": 2}, "headers": {"Idempotency-Key": "a\x00"}},
    ),
]


@pytest.mark.parametrize(("case", "request_args"), CASES, ids=[c for c, _ in CASES])
async def test_a_direct_route_answers_as_fastapi_does(
    case: str, request_args: dict[str, Any]
) -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        plain = await client.post("/plain", **request_args)
        direct = await client.post("/direct", **request_args)
    assert direct.status_code == plain.status_code
    assert direct.text == plain.text.replace("/plain", "/direct")
    if case.startswith("valid"):
        assert direct.status_code == 200
    elif case.startswith("unreadable"):
        assert direct.json() == {
            "error": "bad_request",
            "detail": "There was an error parsing the body",
        }
        assert direct.status_code == 400
    else:
        assert direct.status_code == 422


def test_a_direct_route_is_documented_as_fastapi_documents_it() -> None:
    paths = _app().openapi()["paths"]
    plain, direct = paths["/plain"]["post"], paths["/direct"]["post"]
    for operation in (plain, direct):
        operation.pop("operationId")
        operation.pop("summary")
    assert direct == plain
    assert [p["name"] for p in direct["parameters"]] == ["Idempotency-Key", "basket"]


async def _user() -> str:
    return "someone"


def test_a_direct_route_refuses_dependencies() -> None:
    router = APIRouter(route_class=DirectRoute)

    async def with_dependency(
        body: Line, user: Annotated[str, Depends(_user)]
    ) -> Response:  # pragma: no cover - never called
        return Response(user)

    with pytest.raises(TypeError, match="no dependencies"):
        router.post("/x")(with_dependency)


@asynccontextmanager
async def _refuse(request: Request) -> AsyncIterator[str]:
    if request.headers.get("Authorization") != "Bearer good":
        raise Unauthorized("authentication required")
    yield "someone"


async def test_the_caller_is_resolved_before_the_parameters() -> None:
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter(route_class=DirectRoute)

    @router.post("/guarded")
    @caller_first(_refuse)
    async def guarded(request: Request, body: Line) -> Response:
        return Response(f"{request.state.caller} {body.product_id}")

    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        bad_body = {"product_id": "x"}
        refused = await client.post("/guarded", json=bad_body)
        invalid = await client.post(
            "/guarded", json=bad_body, headers={"Authorization": "Bearer good"}
        )
        served = await client.post(
            "/guarded",
            json={"product_id": 3, "quantity": 1},
            headers={"Authorization": "Bearer good"},
        )
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
    assert (invalid.status_code, invalid.json()["error"]) == (422, "invalid_input")
    assert (served.status_code, served.text) == (200, "someone 3")
