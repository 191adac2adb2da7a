"""Progress of a big project, recounted from rows at most every few seconds per process.

Counting a project's items by status reads every item's entry in an index, and labels per
labeler every label: 1M items cost a few hundred ms, too much for each view of a dashboard
that polls itself. So, above ``CACHE_ABOVE_ITEMS`` items, a view gets the last recount if it
is younger than ``FRESH_S``; an older one is still served (up to ``MAX_STALE_S``) while one
background thread recounts, and the page says when the numbers are from. The numbers are
always a full recount from the rows, never a counter kept up to date, so they cannot drift;
smaller projects are recounted on every view, exactly as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.models.types import utcnow

CACHE_ABOVE_ITEMS = 20_000
FRESH_S = 10.0
MAX_STALE_S = 120.0


@dataclass(frozen=True)
class _Entry:
    value: Any
    total: int
    at: float  # time.monotonic() of the recount
    as_of: datetime


_entries: dict[tuple[str, int], _Entry] = {}
_refreshing: set[tuple[str, int]] = set()
_lock = threading.Lock()


def cached(key: tuple[str, int], compute: Callable[[], tuple[Any, int]],
           refresh: Callable[[], tuple[Any, int]]) -> tuple[Any, datetime | None]:
    """The value for ``key`` (database, project) and when it was counted (None: just now).

    ``compute`` counts in the caller's session; ``refresh`` in a session of its own (it runs
    on a background thread). Both return (value, number of items)."""
    entry = _entries.get(key)
    age = time.monotonic() - entry.at if entry is not None else None
    if entry is None or entry.total <= CACHE_ABOVE_ITEMS or age > MAX_STALE_S:
        value, total = compute()
        _store(key, value, total)
        return value, None
    if age > FRESH_S:
        _refresh_in_background(key, refresh)
    return entry.value, entry.as_of


def _store(key: tuple[str, int], value: Any, total: int) -> None:  # noqa: ANN401
    with _lock:
        if total > CACHE_ABOVE_ITEMS:
            _entries[key] = _Entry(value=value, total=total, at=time.monotonic(),
                                   as_of=utcnow())
        else:
            _entries.pop(key, None)  # small: counted on every view, nothing to keep


def _refresh_in_background(key: tuple[str, int], refresh: Callable[[], tuple[Any, int]]) -> None:
    with _lock:
        if key in _refreshing:
            return
        _refreshing.add(key)

    def run() -> None:
        try:
            value, total = refresh()
            _store(key, value, total)
        finally:
            with _lock:
                _refreshing.discard(key)

    threading.Thread(target=run, name=f"progress-{key[1]}", daemon=True).start()


def refreshing() -> bool:
    """Whether a background recount is running (tests wait for it to end)."""
    with _lock:
        return bool(_refreshing)


def forget() -> None:
    """Drop every cached count (tests, and a process that switches databases)."""
    with _lock:
        _entries.clear()
