"""Request body limits: the one place that refuses an oversized body, before it is read whole.

A body whose Content-Length is over the limit is refused before a byte of it is read; a
chunked (undeclared) body is counted as it streams in and refused as soon as it passes the
limit, so the rest is never buffered. Imports may be large, the training worker's reports
middling, everything else small.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings, get_settings

# Routes that take an import file (a page form or the API) or items as JSON.
UPLOAD_PATHS = re.compile(r"^(/projects/\d+/import|/api/v1/projects/\d+/(imports|items))/?$")
# What a training worker sends: batches of metrics and log lines, its final report.
WORKER_PATHS = re.compile(r"^/api/v1/training-runs/\d+/(claim|report|finish)/?$")

ErrorRenderer = Callable[[Request, int, str], Response]


def body_limit(path: str, settings: Settings) -> int:
    """The most bytes a request to ``path`` may carry in its body."""
    if UPLOAD_PATHS.match(path):
        return settings.max_upload_bytes
    if WORKER_PATHS.match(path):
        return settings.max_worker_report_bytes
    return settings.max_body_bytes


def describe_limit(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    return f"{limit / 1024:g} KB"


class _BodyTooLarge(Exception):
    """Raised into the app from ``receive`` once the body passes the limit."""


class BodyLimit:
    """Pure ASGI middleware; ``render_error(request, status, message)`` draws the 413 the
    same way as every other error (JSON under /api/, an error page otherwise)."""

    def __init__(self, app: ASGIApp, render_error: ErrorRenderer) -> None:
        self.app = app
        self.render_error = render_error

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        request = Request(scope, receive)
        response = self.render_error(
            request, 413, f"The request is too large: the limit here is {describe_limit(limit)}.")
        # The client may still be sending: closing the connection stops it, where keeping
        # it alive would make the server read (and discard) the whole body first.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], get_settings())
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return

        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        await self._refuse(scope, receive, send, limit)
                        refused = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # our 413 went out; whatever the app makes of the broken body is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Once refused, the app's own error (a parse failure, a rollback) is expected.
            if not refused:
                raise
