"""Celery tasks of the consensus domain (on the export queue)."""

from __future__ import annotations

from app.consensus import service
from app.core.celery import get_celery

celery = get_celery()


@celery.task(name="consensus.refresh")
def refresh(project_id: int) -> None:
    """Recompute every stale item of the project; a repeat finds nothing left to do."""
    service.refresh(project_id)
