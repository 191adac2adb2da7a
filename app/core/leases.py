"""Long jobs that one copy of their Celery task works on at a time.

With ``acks_late`` a broker redelivers a task whose worker went quiet, so two copies of a
long job can run at once. A copy claims the job's row with an owner token; another copy
takes over only from one that has not reported for ``job_claim_stale_s``; and every later
write is made only while the row is still ``running`` under this owner (on PostgreSQL the
UPDATE also holds the row's lock until the transaction ends). The row's model needs
``id``, ``status``, ``owner``, ``heartbeat_at``, ``started_at`` and ``done`` columns.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.models.items import JobStatus
from app.models.types import utcnow


class Superseded(Exception):
    """Another copy of the task took the job over (this one was silent too long)."""


def new_owner() -> str:
    return uuid.uuid4().hex


def claim(db: Session, model: Any, row_id: int, owner: str) -> bool:
    """Take a queued job, or one whose owner has been silent too long."""
    now = utcnow()
    stale = now - timedelta(seconds=get_settings().job_claim_stale_s)
    return bool(db.execute(update(model).where(
        model.id == row_id,
        or_(model.status == JobStatus.QUEUED,
            and_(model.status == JobStatus.RUNNING,
                 or_(model.heartbeat_at.is_(None), model.heartbeat_at < stale))))
        .values(status=JobStatus.RUNNING, started_at=now, done=0, owner=owner,
                heartbeat_at=now)).rowcount)


def held_elsewhere(db: Session, model: Any, row_id: int) -> bool:
    """After a failed claim: is the job running under another copy (rather than gone or
    finished)? That copy may be alive, or its worker may have been killed; either way the
    caller must look again later (``recheck_after_s``), or the job could run for ever."""
    row = db.get(model, row_id)
    return row is not None and row.status == JobStatus.RUNNING


def recheck_after_s() -> float:
    """When a copy that found the job claimed should look again: by then a dead owner's
    claim has gone stale, and a live owner has likely finished."""
    s = get_settings()
    return max(1.0, min(s.job_claim_stale_s, s.broker_visibility_timeout_s) / 2)


def still_ours(db: Session, model: Any, row_id: int, owner: str, **values: Any) -> bool:
    """Write ``values`` and the heartbeat if this copy still owns the running job."""
    return bool(db.execute(update(model).where(
        model.id == row_id, model.owner == owner, model.status == JobStatus.RUNNING)
        .values(heartbeat_at=utcnow(), **values)).rowcount)


def hold(db: Session, model: Any, row_id: int, owner: str, **values: Any) -> None:
    """``still_ours``, or stop: raises Superseded when another copy has the job."""
    if not still_ours(db, model, row_id, owner, **values):
        raise Superseded()
