"""``DirectRoute``: the busiest endpoints without FastAPI's per-request dependency solving.

FastAPI declares, documents and mounts such a route like any other: its OpenAPI entry
comes from the endpoint's signature. Only the request handler differs. The endpoint
takes the request, one JSON body, and header or cookie parameters, and no dependencies.
The handler reads them with FastAPI's own functions (``request_params_to_args``,
``request_body_to_args``) and raises the ``RequestValidationError`` FastAPI would, so
the app's handlers answer bad input alike (``tests/kit/test_routing.py`` compares the
two, case by case).

The endpoint returns its ``Response`` itself. Add to cart and checkout run this way:
FastAPI's generic handler, with its dependency graph, exit stacks and response
validation, cost them about 0.1 ms of CPU per request more
(``docs/checkout-performance.md``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Caller = Callable[[Request], AbstractAsyncContextManager[Any]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def caller_first(resolve: Caller) -> Callable[[Endpoint], Endpoint]:
    """Resolve the caller before the parameters are read, as a FastAPI dependency would
    be (bad credentials answer 401 before a bad body answers 422). ``resolve(request)``
    is an async context manager, open around the reading and the endpoint as a
    dependency with ``yield`` is: what it yields is in ``request.state.caller``, and a
    unit of work it opened ends before the answer goes out. Put it below the route
    decorator."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.__dict__["direct_caller"] = resolve
        return endpoint

    return mark


def _is_json(content_type: str) -> bool:
    """FastAPI's test: application/json or application/*+json."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _read_body(raw: bytes, content_type: str | None, strict: bool) -> Any:
    """The body as FastAPI hands it to validation: JSON decoded when the request says it
    is JSON (or says nothing, if not strict), else the bytes, which validation refuses."""
    if not raw:
        return PydanticUndefined
    if content_type is None:
        return raw if strict else json.loads(raw)
    return json.loads(raw) if _is_json(content_type) else raw


class DirectRoute(APIRoute):
    """An ``APIRoute`` whose handler reads the request itself (see the module docstring);
    use it as an ``APIRouter``'s ``route_class``."""

    def get_route_handler(self) -> Handler:
        dependant = self.dependant
        if dependant.dependencies or dependant.path_params or dependant.query_params:
            raise TypeError(
                f"{self.path}: a DirectRoute takes no dependencies or query/path parameters"
            )
        if len(dependant.body_params) != 1:
            raise TypeError(f"{self.path}: a DirectRoute takes exactly one body model")
        body_fields = list(dependant.body_params)
        embed = self._embed_body_fields
        strict = self.strict_content_type
        if isinstance(strict, DefaultPlaceholder):
            strict = strict.value
        headers, cookies = dependant.header_params, dependant.cookie_params
        request_name = dependant.request_param_name or "request"
        endpoint, path = self.endpoint, self.path
        caller: Caller | None = getattr(endpoint, "direct_caller", None)

        async def handler(request: Request) -> Response:
            if caller is None:
                return await serve(request)
            async with caller(request) as found:
                request.state.caller = found
                return await serve(request)

        async def serve(request: Request) -> Response:
            values: dict[str, Any] = {}
            errors: list[Any] = []
            if headers:
                found, wrong = request_params_to_args(headers, request.headers)
                values.update(found)
                errors.extend(wrong)
            if cookies:
                found, wrong = request_params_to_args(cookies, request.cookies)
                values.update(found)
                errors.extend(wrong)
            raw = await request.body()
            try:
                body = _read_body(raw, request.headers.get("content-type"), bool(strict))
            except json.JSONDecodeError as exc:
                # FastAPI's own report of a syntax error, alone.
                error = {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
                raise RequestValidationError([error], body=exc.doc) from exc
            found, wrong = await request_body_to_args(body_fields, body, embed)
            values.update(found)
            errors.extend(wrong)
            if errors:
                raise RequestValidationError(errors, body=body)
            values[request_name] = request
            response = await endpoint(**values)
            if not isinstance(response, Response):
                raise TypeError(f"{path}: a DirectRoute's endpoint returns a Response")
            return response

        return handler
