"""Celery tasks of the generation domain (queue ``generate``)."""

from __future__ import annotations

from app.core.celery import get_celery
from app.generation import service

celery = get_celery()


@celery.task(name="generation.run")
def run(run_id: int) -> None:
    """Generate a round of responses; running it twice does the work once."""
    service.run_generation(run_id=run_id)
