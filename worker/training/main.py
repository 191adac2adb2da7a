"""The Celery app of a training worker: `celery -A worker.training.main worker -Q train
--concurrency 1` (or `tandem worker --queues train`). Unlike worker.main it runs no
database watchdog: a training worker may sit on a GPU machine that only reaches the
server's HTTP API and the broker."""

from __future__ import annotations

from app.core.celery import get_celery

celery = get_celery()
celery.loader.import_default_modules()
