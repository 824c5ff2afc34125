"""The FastAPI application: create_app(settings), its lifespan, the edge middleware, the one error handler."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BerthError, MalformedRequest, error_body
from service.metrics import Metrics
from service.protocol import ItemError
from service.registry import Registry, RuntimeFactory
from service.routes import DIRECT_ROUTES, ROUTE_TASKS, DirectRoute, router
from service.settings import Settings

log = logging.getLogger("berth.app")
access_log = logging.getLogger("berth.access")

# No API key on these: orchestrators probe them. /metrics joins them with BERTH_METRICS_PUBLIC.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
KNOWN_ROUTES = frozenset(
    {"/embed", "/v1/embeddings", "/classify", "/ner", "/qa", "/tokenize", "/models", "/metrics"}
    | {"/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}
    | HEALTH_PATHS
)
# Status recorded (log, metrics) for a request whose client left before the answer; never sent.
CLIENT_CLOSED = 499


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    registry: Registry
    shutting_down: bool = False
    # Requests accepted before shutdown began and not finished yet; the drain waits for zero.
    in_flight: int = 0
    # The background task loading the bundles (started by the lifespan).
    loading: asyncio.Task | None = None

    async def wait_loaded(self) -> None:
        """Until every bundle has loaded or failed (in-process clients and tests use this)."""
        if self.loading is not None:
            await asyncio.shield(self.loading)


def _error_response(
    status: int, err_type: str, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(error_body(err_type, message, param)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count()


def _new_request_id() -> str:
    """Unique per process start and request: a random prefix and a counter (uuid4 per request
    read the OS random source each time, 1% of the event loop's time under load)."""
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def _berth_error_response(exc: BerthError) -> Response:
    return _error_response(exc.status, exc.type, exc.message, exc.param, exc.headers())


class EdgeMiddleware:
    """Request id, API key, body-size limit (also for chunked bodies), access log, request metrics."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        key = state.settings.api_key
        self._key = f"Bearer {key.get_secret_value()}".encode() if key else None
        self._open = HEALTH_PATHS | ({"/metrics"} if state.settings.metrics_public else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or _new_request_id()
        # A request that arrived before shutdown began is served to the end, even if its body
        # is still arriving when the signal comes; routes refuse only those that came after.
        arrived_before_shutdown = not self.state.shutting_down
        scope.setdefault("state", {}).update(
            request_id=request_id, arrived_before_shutdown=arrived_before_shutdown
        )
        path = scope["path"]
        status_box = [500]
        started = [False]
        counted = path not in HEALTH_PATHS and arrived_before_shutdown
        if counted:
            self.state.in_flight += 1

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status_box[0] = message["status"]
                # latin-1 both ways: the id goes back byte for byte as the client sent it.
                echoed = (b"x-request-id", request_id.encode("latin-1"))
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        try:
            rejection = self._reject(scope, headers, path)
            body: bytes | None = None
            if rejection is None:
                body, rejection = await self._limit_body(receive)
            if rejection is not None:
                await rejection(scope, receive, send_with_id)
            elif body is None:
                status_box[0] = CLIENT_CLOSED  # gone before its body was complete
            elif not await self._run_until_disconnect(
                self._handler_for(scope, headers, body), scope, body, receive, send_with_id, started
            ):
                status_box[0] = CLIENT_CLOSED
        except Exception as exc:
            # A bug: the traceback goes to the log with the request id, the caller gets neither.
            log.error("unhandled error in request %s", request_id, exc_info=exc)
            if status_box[0] == 500 and not started[0]:
                body = _error_response(500, "internal_error", f"internal error (request id {request_id})")
                await body(scope, receive, send_with_id)
        finally:
            if counted:
                self.state.in_flight -= 1
            elapsed = time.perf_counter() - start
            route = path if path in KNOWN_ROUTES else "other"
            metrics = self.state.metrics
            metrics.requests.labels(route=route, status=str(status_box[0])).inc()
            metrics.request_duration.labels(route=route).observe(elapsed)
            if self.state.settings.access_log and access_log.isEnabledFor(logging.INFO):
                # Never the Authorization header: the key must not reach the logs.
                access_log.info(
                    orjson.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": path,
                            "status": status_box[0],
                            "ms": round(elapsed * 1000, 2),
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    ).decode()
                )

    def _reject(self, scope: Scope, headers: dict[bytes, bytes], path: str) -> Response | None:
        if self._key is not None and path not in self._open and scope["method"] != "OPTIONS":
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self._key):
                return _error_response(
                    401,
                    "unauthorized",
                    "missing or wrong API key (Authorization: Bearer …)",
                    headers={"www-authenticate": "Bearer"},
                )
        length = headers.get(b"content-length")
        limit = self.state.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            return _error_response(
                413, "payload_too_large", f"body of {int(length)} bytes; the limit is {limit}"
            )
        return None

    async def _limit_body(self, receive: Receive) -> tuple[bytes | None, Response | None]:
        """Read the body up front, counting, so a chunked body cannot pass the limit either.

        (None, None) when the client disconnected before the body was complete.
        """
        limit = self.state.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, None
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return None, _error_response(
                    413, "payload_too_large", f"body over the limit of {limit} bytes"
                )
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _handler_for(self, scope: Scope, headers: dict[bytes, bytes], body: bytes) -> ASGIApp:
        """The direct call of a task route when its JSON body validates, else the FastAPI app."""
        route = DIRECT_ROUTES.get(scope["path"]) if scope["method"] == "POST" and body else None
        if route is None or not headers.get(b"content-type", b"").startswith(b"application/json"):
            return self.app
        try:
            parsed = validate_body(route, body)
        except ValidationError:
            return self.app  # FastAPI parses it again and answers with the usual error
        return _DirectCall(route, parsed)

    async def _run_until_disconnect(
        self, handler_app: ASGIApp, scope: Scope, body: bytes, receive: Receive, send: Send,
        started: list[bool],
    ) -> bool:
        """Run the app; if the client goes away before the answer starts, cancel it (False).

        Once the body is read, the only message a server sends is http.disconnect, so a task
        waiting on it notices a client that left; cancelling the handler drops its queued items
        before they reach the model (the batcher counts them as cancelled).
        """
        disconnect = asyncio.ensure_future(receive())
        replayed = False

        async def app_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await asyncio.shield(disconnect)

        handler = asyncio.ensure_future(handler_app(scope, app_receive, send))
        try:
            await asyncio.wait({handler, disconnect}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done() and not started[0]:
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
                return False
            await handler  # re-raises the handler's own error for the 500 answer
            return True
        finally:
            disconnect.cancel()
            if not handler.done():  # we were cancelled ourselves: take the handler down too
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await handler


def validate_body(route: DirectRoute, body: bytes) -> object:
    """A direct route's request model from raw JSON bytes (pydantic's Rust parser)."""
    return route.model.model_validate_json(body)


class _DirectCall:
    """An ASGI app that calls one task route function on an already validated body."""

    def __init__(self, route: DirectRoute, parsed: object) -> None:
        self.route = route
        self.parsed = parsed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.route.endpoint(self.parsed, Request(scope, receive))
        except BerthError as exc:  # the mapping of the registered handler below
            response = _berth_error_response(exc)
        await response(scope, receive, send)


_PRIMITIVE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none"})


def _field_path(loc: tuple) -> list[str]:
    """A pydantic error location as the request's field path: no "body", and no union
    alternative tags ("str", "list[str]", "Pair"), which name types, not fields."""
    def is_tag(part: object) -> bool:
        return isinstance(part, str) and (
            part in _PRIMITIVE_TAGS or "[" in part or part[:1].isupper() or part.startswith("function-")
        )

    return [str(x) for x in loc if x != "body" and not is_tag(x)]


def install_error_handlers(app: FastAPI) -> None:
    """The one mapping from errors to the one error body (design §3)."""

    @app.exception_handler(BerthError)
    async def _domain(request: Request, exc: BerthError) -> Response:
        return _berth_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            err = MalformedRequest(f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}")
            return _error_response(err.status, err.type, err.message)
        # A union field reports one error per alternative; the deepest names the offending part
        # best ("inputs.0.text_pair" rather than "inputs", which the str alternative gives).
        first = max(errors, key=lambda e: len(_field_path(e["loc"])), default=first)
        loc = _field_path(first["loc"])
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, ItemError):
            loc.append(str(cause.index))
        param = ".".join(loc) or None
        state: AppState = request.app.state.berth
        # Which model the request meant is unknown here; count it under the route's task.
        task = ROUTE_TASKS.get(request.url.path, "other")
        state.metrics.rejected.labels(model="", task=task, reason="invalid").inc()
        message = str(first["msg"]).removeprefix("Value error, ")
        return _error_response(422, "invalid_request", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        err_type = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(
            exc.status_code, err_type, str(exc.detail), headers=getattr(exc, "headers", None)
        )


def create_app(settings: Settings, runtime_factory: RuntimeFactory | None = None) -> FastAPI:
    """Build the app; nothing loads until the lifespan starts (no import-time side effects)."""
    metrics = Metrics()
    state = AppState(settings, metrics, Registry(settings, metrics, runtime_factory))

    async def load_models() -> None:
        try:
            await state.registry.load_all()
        except Exception:  # a bug here must not leave /readyz saying "loading" for ever
            log.exception("loading the models failed")
            state.registry.loading_done = True
        metrics.ready.set(1 if state.registry.readiness()[0] and not state.shutting_down else 0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Startup returns at once so the server binds before the bundles load (a liveness probe
        # during a long load gets 200 from /healthz, not a refused connection); /readyz says
        # "loading" until load_models is done, and task routes answer 503 until their model is.
        state.registry.register_bundles()
        state.loading = asyncio.create_task(load_models(), name="berth-load-models")
        try:
            yield
        finally:
            # Reached after the server stopped taking connections and in-flight requests ended;
            # the batchers still finish anything they accepted before the process exits. A stop
            # during loading does not wait for the rest of the bundles to load.
            begin_shutdown(app)
            if not state.loading.done():
                state.loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.loading
            await state.registry.stop()

    app = FastAPI(
        title="berth",
        summary="Inference for BERT-family encoders: embeddings, classification, NER, QA.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.berth = state
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(EdgeMiddleware, state=state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "x-queue-time-ms", "x-inference-time-ms"],
        )
    return app


def begin_shutdown(app: FastAPI) -> None:
    """From this moment /readyz answers 503 and new task requests are refused with 503."""
    state: AppState = app.state.berth
    state.shutting_down = True
    state.metrics.ready.set(0)
