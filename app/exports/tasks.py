"""Celery tasks of the exports domain."""

from __future__ import annotations

from app.core.celery import get_celery
from app.exports import snapshots

celery = get_celery()


@celery.task(name="exports.build_snapshot")
def build_snapshot(snapshot_id: int) -> None:
    """Build a snapshot's files; running it twice does the work once."""
    snapshots.build_snapshot(snapshot_id=snapshot_id)
