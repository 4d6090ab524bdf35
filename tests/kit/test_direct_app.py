"""DirectApp serves its direct routes through the app's middleware and error handlers,
and leaves them to FastAPI whenever one of the layers it skips has work to do."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY
from pydantic import BaseModel, StrictInt

from emporium.kit.errors import Conflict, install_error_handlers
from emporium.kit.logging import CorrelationIdMiddleware
from emporium.kit.metrics import PrometheusMiddleware
from emporium.kit.routing import DirectApp, DirectRoute


class Order(BaseModel):
    quantity: StrictInt


async def place(request: Request, body: Order) -> Response:
    if body.quantity == 409:
        raise Conflict("already placed")
    if body.quantity == 500:
        raise RuntimeError("a bug")
    # FastAPI's own stack sets this; the direct stack has no exit stacks to offer.
    taken = "framework" if "fastapi_middleware_astack" in request.scope else "direct"
    return Response(f"{taken} {body.quantity} {request.url.path}", media_type="text/plain")


def _router() -> APIRouter:
    router = APIRouter(prefix="/orders", route_class=DirectRoute)
    router.post("/place")(place)
    return router


def _app(app: FastAPI) -> FastAPI:
    install_error_handlers(app)
    app.add_middleware(PrometheusMiddleware)
    app.add_middleware(CorrelationIdMiddleware)
    if isinstance(app, DirectApp):
        app.include_direct(_router(), prefix="/api")
    else:
        app.include_router(_router(), prefix="/api")
    return app


async def _post(app: FastAPI, path: str = "/api/orders/place", **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, **kwargs)


def _served(status: str) -> float:
    labels = {"method": "POST", "route": "/api/orders/place", "status": status}
    return REGISTRY.get_sample_value("emporium_http_requests_total", labels) or 0.0


async def test_a_direct_route_skips_the_framework_and_keeps_the_middleware() -> None:
    before = _served("200")
    headers = {"X-Correlation-ID": "order-42"}
    direct = await _post(_app(DirectApp()), json={"quantity": 3}, headers=headers)
    plain = await _post(_app(FastAPI()), json={"quantity": 3}, headers=headers)
    assert (direct.status_code, direct.text) == (200, "direct 3 /api/orders/place")
    assert (plain.status_code, plain.text) == (200, "framework 3 /api/orders/place")
    assert direct.headers["x-correlation-id"] == plain.headers["x-correlation-id"] == "order-42"
    assert _served("200") == before + 2  # the metrics middleware labelled both alike


async def test_errors_are_answered_as_on_the_framework_path() -> None:
    conflicts, failures = _served("409"), _served("500")
    for app in (_app(DirectApp()), _app(FastAPI())):
        conflict = await _post(app, json={"quantity": 409})
        invalid = await _post(app, json={"quantity": "3"})
        broken = await _post(app, json={"quantity": 500})
        assert (conflict.status_code, conflict.json()["error"]) == (409, "conflict")
        assert (invalid.status_code, invalid.json()["error"]) == (422, "invalid_input")
        assert (broken.status_code, broken.json()["error"]) == (500, "internal_error")
        assert "x-correlation-id" in conflict.headers
    assert (_served("409"), _served("500")) == (conflicts + 2, failures + 2)


async def test_other_methods_and_paths_go_through_the_router() -> None:
    transport = httpx.ASGITransport(app=_app(DirectApp()))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", follow_redirects=True
    ) as client:
        wrong_method = await client.get("/api/orders/place")
        trailing = await client.post("/api/orders/place/", json={"quantity": 1})
        unknown = await client.post("/api/orders/other", json={"quantity": 1})
    assert wrong_method.status_code == 405
    # FastAPI's redirect to the route without the slash, then the direct stack.
    assert (trailing.status_code, trailing.text) == (200, "direct 1 /api/orders/place")
    assert unknown.status_code == 404


async def test_a_body_limit_or_a_root_path_keeps_the_framework_path() -> None:
    limited = _app(DirectApp(max_body_size=20))
    small = await _post(limited, json={"quantity": 3})
    large = await _post(limited, json={"quantity": 3, "padding": "x" * 100})
    assert (small.status_code, small.text) == (200, "framework 3 /api/orders/place")
    assert large.status_code == 413
    # Behind a proxy that mounts the shop under /shop (the server's --root-path).
    transport = httpx.ASGITransport(app=_app(DirectApp()), root_path="/shop")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post("/shop/api/orders/place", json={"quantity": 4})
    assert (answer.status_code, answer.text) == (200, "framework 4 /shop/api/orders/place")
