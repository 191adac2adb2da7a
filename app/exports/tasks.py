"""Celery tasks of the exports domain."""

from __future__ import annotations

from app.core import leases
from app.core.celery import get_celery
from app.exports import snapshots

celery = get_celery()


@celery.task(name="exports.build_snapshot", bind=True, max_retries=None)
def build_snapshot(self, snapshot_id: int) -> None:  # noqa: ANN001
    """Build a snapshot's files; running it twice does the work once."""
    if not snapshots.build_snapshot(snapshot_id=snapshot_id):
        # Another copy holds the snapshot. If its worker was killed, nothing else would
        # ever finish the snapshot: look again once that claim can have gone stale.
        raise self.retry(countdown=leases.recheck_after_s())
