"""Celery tasks are sent only after the transaction that created their rows has committed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_PENDING = "tandem_pending_tasks"


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
        celery.send_task(name, args=list(args))


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
