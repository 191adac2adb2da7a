"""The Celery app the workers run, with every task module registered."""

from app.core.celery import get_celery

celery = get_celery()
celery.loader.import_default_modules()
