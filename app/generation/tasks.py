"""Celery tasks of the generation domain (queue ``generate``)."""

from __future__ import annotations

from app.core import leases
from app.core.celery import get_celery
from app.generation import service

celery = get_celery()


@celery.task(name="generation.run", bind=True, max_retries=None)
def run(self, run_id: int) -> None:  # noqa: ANN001
    """Generate a round of responses; running it twice does the work once."""
    if not service.run_generation(run_id=run_id):
        # Another copy holds the run; if its worker was killed, nothing else would ever
        # finish it: look again once that claim can have gone stale.
        raise self.retry(countdown=leases.recheck_after_s())
