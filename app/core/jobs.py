"""Celery tasks are sent only after the transaction that created their rows has committed.

The row is the truth, the message only a nudge: when the broker cannot take the message
(Redis down, or restarted and its queue lost), the request still succeeds, and the
workers' watchdog sends the task again for every job still queued (``resend_queued``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from app.models.items import JobStatus
from app.models.types import utcnow

_PENDING = "tandem_pending_tasks"
log = logging.getLogger("tandem.jobs")


def enqueue_after_commit(db: Session, name: str, *args: Any) -> None:
    """Queue task ``name`` with JSON ``args``; it is sent once ``db`` commits, never before."""
    db.info.setdefault(_PENDING, []).append((name, args))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if not pending:
        return
    from app.core.celery import get_celery

    celery = get_celery()
    for name, args in pending:
        try:
            celery.send_task(name, args=list(args))
        except Exception as exc:  # noqa: BLE001  (the watchdog sends it again)
            log.warning("could not queue %s%s (%s); the workers will pick it up once the "
                        "broker is back", name, tuple(args), type(exc).__name__)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def resend_queued(db: Session, model: Any, task: str, *, older_than_s: float) -> list[int]:
    """Send ``task`` again for the jobs of ``model`` still queued after ``older_than_s``
    (their message was lost, or never sent). ``heartbeat_at`` of a queued row records
    when it was last sent, so each is sent at most once a period; a duplicate message is
    harmless, since the task claims its row first."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    ids = list(db.scalars(select(model.id).where(
        model.status == JobStatus.QUEUED, model.created_at < cutoff,
        or_(model.heartbeat_at.is_(None), model.heartbeat_at < cutoff))))
    if ids:
        db.execute(update(model).where(model.id.in_(ids), model.status == JobStatus.QUEUED)
                   .values(heartbeat_at=now))
        for row_id in ids:
            enqueue_after_commit(db, task, row_id)
    return ids
