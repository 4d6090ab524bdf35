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

``DirectApp`` goes one step further for the routes included with ``include_direct``: a
request for one of them (its exact method and path) skips FastAPI's router and its own
layers, and runs through a stack built as Starlette builds its own (the server-error
handler, the app's middleware, its exception handlers) straight into the handler.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

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

    direct_handler: Handler

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
            except Exception as exc:
                # Bytes that are not UTF-8, nesting too deep to parse: FastAPI's answer.
                raise HTTPException(400, "There was an error parsing the body") from exc
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

        self.direct_handler = handler
        return handler


async def _serve_direct(scope: Scope, receive: Receive, send: Send) -> None:
    route: DirectRoute = scope["route"]
    response = await route.direct_handler(Request(scope, receive, send))
    await response(scope, receive, send)


class DirectApp(FastAPI):
    """A FastAPI app that serves the routes of ``include_direct`` without its router.

    FastAPI's router matches included routers level by level, and its app adds layers
    for its telemetry, body limits and exit stacks; for add to cart and checkout these
    cost about 9 % of the server's CPU per order (``bench/server_cpu_pair.py``). The
    direct stack keeps what those requests use: the server-error handler, the app's
    middleware (correlation ids, metrics, access log) and its exception handlers. It is
    only taken while the skipped layers have nothing to do: no ``max_body_size``, no
    FastAPI telemetry, no root path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: dict[tuple[str, str], DirectRoute] = {}
        self._direct_stack: ASGIApp | None = None

    def include_direct(self, router: APIRouter, *, prefix: str = "") -> None:
        """``include_router``, and serve the router's DirectRoutes on the direct stack."""
        self.include_router(router, prefix=prefix)
        for route in router.routes:
            if isinstance(route, DirectRoute) and not route.param_convertors:
                for method in route.methods or ():
                    self._direct[(method, prefix + route.path)] = route

    def _usable(self) -> bool:
        telemetry = getattr(self, "_native_telemetry", None)
        return (
            self.max_body_size is None
            and not self.root_path
            and not (telemetry is not None and telemetry.enabled())
        )

    def _build_direct_stack(self) -> ASGIApp:
        # Starlette's build_middleware_stack, with the direct handler for the router.
        error_handler = None
        handlers: dict[Any, Any] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        middleware = [
            Middleware(ServerErrorMiddleware, handler=error_handler, debug=self.debug),
            *self.user_middleware,
            Middleware(ExceptionMiddleware, handlers=handlers, debug=self.debug),
        ]
        app: ASGIApp = _serve_direct
        for cls, args, kwargs in reversed(middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self._direct.get((scope["method"], scope["path"]))
        if route is None:
            await super().__call__(scope, receive, send)
            return
        if self._direct_stack is None:
            # Built once, at the first such request: the middleware is final by then.
            if not self._usable():
                self._direct.clear()
                await super().__call__(scope, receive, send)
                return
            self._direct_stack = self._build_direct_stack()
        scope["app"] = self
        scope["router"] = self.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        await self._direct_stack(scope, receive, send)
