"""Celery tasks of the items domain."""

from __future__ import annotations

from app.core.celery import get_celery
from app.items import service

celery = get_celery()


@celery.task(name="items.run_import")
def run_import(job_id: int) -> None:
    """Import a stored file; running it twice does the work once."""
    service.run_import_job(job_id=job_id)
