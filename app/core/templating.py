"""The Jinja2 environment: autoescape on everywhere, with the helpers pages share."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.core.config import ROOT
from app.core.markdown import render_markdown
from app.items.chat import prompt_messages

_env = Environment(
    loader=FileSystemLoader(ROOT / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # Templates change with a deploy, which restarts the server: no stat() per render.
    auto_reload=False,
)
_env.filters["markdown"] = render_markdown
_env.filters["prompt_messages"] = prompt_messages
_env.filters["tojson_compact"] = lambda v: json.dumps(v, separators=(",", ":"))

templates = Jinja2Templates(env=_env)


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200, headers: dict[str, str] | None = None):  # noqa: ANN201
    """Render a page or partial with the request's user and CSRF token available."""
    ctx = {
        "user": getattr(request.state, "user", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "flash": None,
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code,
                                      headers=headers)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"
