"""Celery tasks of the items domain."""

from __future__ import annotations

from app.core import leases
from app.core.celery import get_celery
from app.items import service

celery = get_celery()


@celery.task(name="items.run_import", bind=True, max_retries=None)
def run_import(self, job_id: int) -> None:  # noqa: ANN001
    """Import a stored file; running it twice does the work once."""
    if not service.run_import_job(job_id=job_id):
        # Another copy holds the job; if its worker was killed, nothing else would ever
        # finish it: look again once that claim can have gone stale.
        raise self.retry(countdown=leases.recheck_after_s())
