"""The Celery application, configured from settings. Tasks are addressed by name."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from celery import Celery

from app.core.config import Settings, get_settings

TASK_MODULES = ["app.items.tasks", "app.judging.tasks", "app.exports.tasks",
                "app.generation.tasks", "app.consensus.tasks", "worker.training.tasks"]
# "train" is consumed only by training workers (GPU machines): `tandem worker --queues train`.
QUEUES = ("import", "export", "judge", "generate", "train")


def make_celery(settings: Settings) -> Celery:
    broker = settings.resolved_broker_url
    app = Celery("tandem", broker=broker, include=TASK_MODULES)
    options: dict = {}
    if broker.startswith("filesystem"):
        folder = settings.broker_folder
        folder.mkdir(parents=True, exist_ok=True)
        control = folder / "control"
        control.mkdir(exist_ok=True)
        _create_exchange_files(control, [*QUEUES, "celery.pidbox"])
        # kombu keeps its control exchanges in ./control unless told otherwise.
        # The worker looks for new files every 0.2 s (kombu's default, 1 s, made every
        # job on the embedded default start up to a second late).
        options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
                   "control_folder": str(control), "polling_interval": 0.2}
    elif broker.startswith("redis"):
        options = {"visibility_timeout": settings.broker_visibility_timeout_s}
        if settings.broker_key_prefix:
            options["global_keyprefix"] = settings.broker_key_prefix
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        # A worker whose broker went away (Redis restarted) reconnects by itself, however
        # long it takes; the default gives up after 100 tries and leaves a worker that
        # consumes nothing. A send rides out a blip of a couple of seconds; work whose send
        # failed is found again from its rows by the watchdog (worker/main.py).
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2,
                                   "interval_step": 0.5, "interval_max": 1.0},
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="import",
        task_routes={"items.*": {"queue": "import"}, "exports.*": {"queue": "export"},
                     "consensus.*": {"queue": "export"},
                     "judging.*": {"queue": "judge"}, "training.*": {"queue": "train"},
                     "generation.*": {"queue": "generate"}},
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    return app


def _create_exchange_files(control: Path, exchanges: list[str]) -> None:
    """Make each exchange's binding file (an empty table) before any worker binds to it.

    kombu's filesystem transport creates the file and only then locks it, so a second worker
    booting at the same moment could read it empty and die on the JSON; an existing file
    takes the locked path in both. Each file appears whole (a link of a written file).
    """
    for name in exchanges:
        target = control / f"{name}.exchange"
        if target.exists():
            continue
        tmp = control / f".{name}.exchange.{os.getpid()}.tmp"
        tmp.write_bytes(b"[]")
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # another process made it first
        finally:
            tmp.unlink(missing_ok=True)


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())
