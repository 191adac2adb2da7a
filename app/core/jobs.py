"""Celery tasks are sent only after the transaction that created their rows has committed.

The row is the truth, the message only a nudge: when the broker cannot take the message
(Redis down, or restarted and its queue lost), the request still succeeds, and the
workers' watchdog sends the task again for every job still queued, and for every job whose
worker died while running it (``requeue_lost``).
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


def requeue_lost(db: Session, model: Any, task: str, *, queued_after_s: float,
                 stale_after_s: float) -> list[int]:
    """Send ``task`` again for the jobs of ``model`` whose message is gone; returns their ids.

    A job still running under a copy silent for ``stale_after_s`` (its worker was killed)
    goes back to the queue first: if that copy is alive after all, its next write finds the
    job no longer its own and stops (app.core.leases). A job queued for ``queued_after_s``
    lost its message (a Redis restart) or never had one (the broker was down). For a queued
    row ``heartbeat_at`` records when it was last sent, so each is sent at most once a
    period; a duplicate message is harmless, since the task claims its row first.
    """
    now = utcnow()
    silent = or_(model.heartbeat_at.is_(None),
                 model.heartbeat_at < now - timedelta(seconds=stale_after_s))
    db.execute(update(model).where(model.status == JobStatus.RUNNING, silent)
               .values(status=JobStatus.QUEUED, owner=None, heartbeat_at=None)
               .execution_options(synchronize_session=False))
    cutoff = now - timedelta(seconds=queued_after_s)
    ids = list(db.scalars(select(model.id).where(
        model.status == JobStatus.QUEUED,
        or_(model.heartbeat_at.is_(None), model.heartbeat_at < cutoff),
        or_(model.started_at.is_not(None), model.created_at < cutoff))))
    if ids:
        db.execute(update(model).where(model.id.in_(ids), model.status == JobStatus.QUEUED)
                   .values(heartbeat_at=now).execution_options(synchronize_session=False))
        for row_id in ids:
            enqueue_after_commit(db, task, row_id)
    return ids
