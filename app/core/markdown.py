"""Markdown for untrusted text: no raw HTML, then an allow-list sanitizer on the output."""

from __future__ import annotations

import functools

import nh3
from markdown_it_pyrs import MarkdownIt
from markupsafe import Markup

# CommonMark without its two raw-HTML rules (raw HTML shows as text, as a labeler should see
# it), plus tables. markdown-it-pyrs is the Rust port of markdown-it: the same HTML as
# markdown-it-py for these rules, about 8x faster, and rendering responses was ~15% of the
# server's CPU under labeling load.
_COMMONMARK_WITHOUT_HTML = [
    "blockquote", "code", "fence", "heading", "hr", "lheading", "list", "paragraph",
    "reference", "autolink", "backticks", "emphasis", "entity", "escape", "image", "link",
    "newline",
]
_md = MarkdownIt("zero").enable_many([*_COMMONMARK_WITHOUT_HTML, "table"])

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "del",
}


CACHED_CHARS = 8192  # 4096 entries of at most this: the cache stays in tens of megabytes


def _render(text: str) -> str:
    html = _md.render(text)
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes={"a": {"href", "title"}, "code": {"class"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return clean


def render_markdown(text: str | None) -> Markup:
    """Sanitized HTML for Markdown text. Cached: with overlap k, each response is shown to
    k labelers, and the prompt and instructions on every page."""
    text = text or ""
    html = _cached(text) if len(text) <= CACHED_CHARS else _render(text)
    return Markup(html)  # noqa: S704  (sanitized in _render)


_cached = functools.lru_cache(maxsize=4096)(_render)
