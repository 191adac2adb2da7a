"""Progress of a big project, recounted from rows at most every few seconds, for every web
process at once.

Counting a project's items by status reads every item's entry in an index, and labels per
labeler every label: 1M items cost a few hundred ms, too much for each view of a dashboard
that polls itself. So, above ``progress_recount_above_items`` items (a setting, 20k by
default), a view gets the last recount if it is younger than ``progress_recount_every_s``
(10 s); an older one is still served (up to ``MAX_STALE_S``) while one background recount
runs, and the page says when the numbers are from. The numbers are always a full recount
from the rows, never a counter kept up to date, so they cannot drift; smaller projects are
recounted on every view, exactly as before.

The last recount is a row of ``progress_counts``, not process memory: every web process
serves the same numbers, and one recount at a time runs for all of them (a process claims
it on the row; a claim older than ``CLAIM_TIMEOUT_S`` is taken over). Rows are written on a
background thread in a session of its own, after the view's own transaction: a view that
holds SQLite's write lock never waits for itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.labeling import repository
from app.models.types import utcnow

log = logging.getLogger("tandem.progress")

MAX_STALE_S = 120.0
CLAIM_TIMEOUT_S = 120.0

# A recount returns what the page shows (plain JSON values) and the project's item count.
Count = Callable[[], tuple[dict, int]]

_busy: set[int] = set()  # projects this process is writing or recounting on a thread
_lock = threading.Lock()


def cached(db: Session, project_id: int, compute: Count,
           refresh: Count) -> tuple[dict, datetime | None]:
    """The project's progress and when it was counted (None: just now).

    ``compute`` counts in the caller's session; ``refresh`` in a session of its own (it runs
    on a background thread)."""
    settings = get_settings()
    above = settings.progress_recount_above_items
    row = repository.progress_count(db, project_id=project_id)
    now = utcnow()
    age = (now - row.counted_at).total_seconds() if row is not None else None
    if row is None or row.items <= above or age > MAX_STALE_S:
        value, total = compute()
        if total > above or row is not None:
            _in_background(project_id, lambda: _store(project_id, value, total, now))
        return value, None
    if age > settings.progress_recount_every_s:
        _in_background(project_id, lambda: _recount(project_id, refresh))
    return row.counts, row.counted_at


def _store(project_id: int, value: dict, total: int, counted_at: datetime) -> None:
    from app.core.db import session_scope

    with session_scope(write=True) as db:
        if total > get_settings().progress_recount_above_items:
            repository.store_progress_count(db, project_id=project_id, counted_at=counted_at,
                                            items=total, counts=value)
        else:
            repository.drop_progress_count(db, project_id=project_id)  # small again


def _recount(project_id: int, refresh: Count) -> None:
    from app.core.db import session_scope

    now = utcnow()
    with session_scope(write=True) as db:
        claimed = repository.claim_progress_refresh(
            db, project_id=project_id, now=now,
            taken_over_before=now - timedelta(seconds=CLAIM_TIMEOUT_S))
    if claimed:  # else another process is recounting: its row serves everyone
        value, total = refresh()
        _store(project_id, value, total, now)


def _in_background(project_id: int, work: Callable[[], None]) -> None:
    with _lock:
        if project_id in _busy:
            return
        _busy.add(project_id)

    def run() -> None:
        try:
            work()
        except Exception:  # a lost recount: the next view tries again
            log.exception("progress recount of project %s failed", project_id)
        finally:
            with _lock:
                _busy.discard(project_id)

    threading.Thread(target=run, name=f"progress-{project_id}", daemon=True).start()


def refreshing() -> bool:
    """Whether a background write or recount is running (tests wait for it to end)."""
    with _lock:
        return bool(_busy)
