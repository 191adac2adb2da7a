"""The Celery app the workers run, with every task module registered.

Each worker also runs a small watchdog: work claimed by a worker that died (SIGKILL, lost
machine) is handed out again once its claim is stale, instead of waiting for the broker's
visibility timeout, and jobs whose message the broker lost (a Redis restart) are sent
again."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from app.core.celery import get_celery
from app.core.config import get_settings

celery = get_celery()
celery.loader.import_default_modules()
log = logging.getLogger("tandem.worker")
_stop = threading.Event()


def _resend_lost_jobs() -> None:
    from app.core.db import session_scope
    from app.core.jobs import requeue_lost
    from app.models import ExportSnapshot, GenerationRun, ImportJob

    settings = get_settings()
    with session_scope(write=True) as db:
        for model, task in ((ImportJob, "items.run_import"),
                            (ExportSnapshot, "exports.build_snapshot"),
                            (GenerationRun, "generation.run")):
            if ids := requeue_lost(db, model, task, queued_after_s=settings.job_resend_after_s,
                                   stale_after_s=settings.job_claim_stale_s):
                log.warning("sent %s again for %d job(s) whose message or worker was lost: "
                            "%s", task, len(ids), ids)


def _watchdog() -> None:
    from app.judging.tasks import recover
    from app.training.service import fail_stale_runs

    settings = get_settings()
    interval = max(1.0, min(settings.judge_claim_stale_s / 2,
                            settings.training_heartbeat_timeout_s / 4,
                            settings.job_resend_after_s / 2,
                            settings.job_claim_stale_s / 2))
    while not _stop.wait(interval):
        try:
            recover()
            fail_stale_runs()
            _resend_lost_jobs()
        except Exception:  # noqa: BLE001  (the next round tries again)
            log.exception("watchdog round failed")


@worker_ready.connect
def _start_watchdog(**_: object) -> None:
    threading.Thread(target=_watchdog, name="tandem-watchdog", daemon=True).start()


@worker_shutdown.connect
def _stop_watchdog(**_: object) -> None:
    _stop.set()
