"""Celery worker entry point: ``celery -A worker.main worker`` (or ``tandem worker``)."""
