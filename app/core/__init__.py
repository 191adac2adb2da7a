"""Cross-cutting pieces: settings, database, Celery, templating, security."""
