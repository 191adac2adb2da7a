"""The FastAPI application: pages under /, the JSON API under /api/v1."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.deps import LoginRequired
from app.core.config import ROOT
from app.core.errors import DomainError
from app.core.health import describe_error
from app.core.limits import BodyLimit
from app.core.templating import is_htmx, render

log = logging.getLogger("tandem")
DATABASE_UNAVAILABLE = "The database is unavailable right now; try again in a moment."
UNSTORABLE = ("A value in the request is out of range or cannot be stored (an id too large, "
              "or text with a NUL character).")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in self.headers if k not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_response(request: Request, status: int, message: str, details=None) -> Response:  # noqa: ANN001
    if _wants_json(request):
        body = {"detail": message}
        if details is not None:
            body["errors"] = details
        return JSONResponse(body, status_code=status)
    if is_htmx(request):
        return render(request, "_error.html", {"message": message, "details": details},
                      status_code=status,
                      headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    return render(request, "error.html", {"message": message, "status": status,
                                          "details": details}, status_code=status)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector from stalling every request thread at once.

    Requests free almost everything they allocate by reference counting, yet at Python's
    default threshold (a young collection every 700 net allocations) the collector ran about
    1,000 times and made 5 full passes over ~170k objects during the labeling benchmark,
    the longest pausing every thread for 190 ms: that was the p99. The objects made at
    start-up (modules, templates, the ORM's registry) are frozen out of the collector's
    sight, and a young collection waits for 20,000 net allocations: 2 collections, 7 ms in
    all, in the same run.
    """
    if gc.get_freeze_count():
        return  # once per process (an app made again in the same process, as tests do)
    gc.collect()  # garbage made so far is freed, not frozen
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


WARM_CONNECTIONS = 4


def _warm_pool(engine) -> None:  # noqa: ANN001
    """Open a few pooled connections before the first request: a PostgreSQL connection
    costs a backend process and its catalog caches, and labelers who start together would
    otherwise wait for one each."""
    with ExitStack() as stack:
        size = getattr(engine.pool, "size", lambda: 1)()  # QueuePool; others hold one
        for _ in range(min(WARM_CONNECTIONS, size)):
            stack.enter_context(engine.connect()).exec_driver_sql("SELECT 1")


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Compile every template and open the database pool before the first request, so the
    first labelers of the day do not pay for it."""
    from app.core.db import get_engine
    from app.core.templating import templates

    for name in templates.env.list_templates(extensions=["html"]):
        templates.env.get_template(name)
    try:
        _warm_pool(get_engine())
    except Exception:  # noqa: BLE001  (the readiness of the database is reported per request)
        log.warning("database not reachable at start-up")
    _tune_gc()
    yield
    get_engine().dispose()


def create_app() -> FastAPI:
    from app.analytics.router import router as analytics_router
    from app.api.router import router as api_router
    from app.auth.router import router as auth_router
    from app.consensus.router import router as gold_router
    from app.core.health_router import router as health_router
    from app.exports.router import router as exports_router
    from app.generation.router import api as generation_api
    from app.generation.router import router as generation_pages
    from app.items.router import router as items_router
    from app.judging.pages import router as judging_pages
    from app.judging.router import api as judging_api
    from app.labeling.router import router as labeling_router
    from app.projects.router import router as projects_router
    from app.reviewing.router import router as reviewing_router
    from app.training.api import router as training_api
    from app.training.router import router as training_pages

    app = FastAPI(title="Tandem", version="0.1.0", docs_url="/api/docs",
                  openapi_url="/api/v1/openapi.json", redoc_url=None, lifespan=_lifespan)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    for router in (auth_router, projects_router, items_router, labeling_router,
                   exports_router, api_router, judging_pages, judging_api,
                   reviewing_router, analytics_router, gold_router, training_api,
                   training_pages, generation_pages, generation_api, health_router):
        app.include_router(router)

    # Inside SecurityHeaders, so its 413 carries the headers too.
    app.add_middleware(BodyLimit, render_error=_error_response)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.message}, status_code=401)
        target = "/login?next=" + request.url.path
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return _error_response(request, exc.status_code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return _error_response(request, 422, f"Invalid input — {message}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> Response:
        # The server lost its database (restart, failover, full pool): say so and when to
        # retry, without a stack trace. The pool drops the dead connections; the next
        # request after the database is back gets a fresh one (pool_pre_ping).
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    describe_error(exc))
        response = _error_response(request, 503, DATABASE_UNAVAILABLE)
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(sa_exc.DataError)
    @app.exception_handler(OverflowError)
    async def unstorable_value(request: Request, exc: Exception) -> Response:
        # An id past the 32/64-bit range (PostgreSQL: DataError; SQLite's driver: a bare
        # OverflowError) or text the database cannot hold: names no row, so a 4xx, not a 500.
        if isinstance(exc, OverflowError) and "SQLite INTEGER" not in str(exc):
            raise exc
        return _error_response(request, 422, UNSTORABLE)

    return app
