"""The ``training.run`` task, consumed only by training workers (queue ``train``).

It claims the run over the API, downloads the snapshot and checks its sha256, trains with
TRL, reports metrics and log lines (its heartbeat) every few seconds, saves the checkpoint
to the artifacts location and registers it. Nothing here touches the database.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from app.core.celery import get_celery
from app.core.config import get_settings
from worker.training.client import ApiClient, RunGone

celery = get_celery()
log = logging.getLogger("tandem.training")


class Reporter:
    """Buffers metrics and log lines; a thread sends them every ``interval`` seconds (the
    heartbeat), and learns from the answer whether the run was cancelled."""

    def __init__(self, client: ApiClient, run_id: int, attempt: int, interval: float) -> None:
        self.client, self.run_id, self.attempt = client, run_id, attempt
        self.interval = interval
        self.points: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.gone: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tandem-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def metrics(self, point: dict[str, Any]) -> None:
        with self.lock:
            self.points.append(point)

    def line(self, text: str) -> None:
        with self.lock:
            self.lines.append(text)

    def flush(self) -> None:
        with self.lock:
            points, lines, self.points, self.lines = self.points, self.lines, [], []
        try:
            answer = self.client.report(self.run_id, attempt=self.attempt, points=points,
                                        log=lines)
        except RunGone as exc:
            self.gone = str(exc)
            self.cancel.set()
            return
        except Exception:  # noqa: BLE001  (the server is away: keep the data, try again)
            with self.lock:
                self.points[:0], self.lines[:0] = points, lines
            log.warning("training run %s: report failed; will retry", self.run_id,
                        exc_info=True)
            return
        if answer.get("cancel"):
            self.cancel.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        self.flush()


@celery.task(name="training.run", acks_late=True)
def run(run_id: int, attempt: int, token: str) -> None:
    """Train one attempt of one run; a second delivery finds it claimed and does nothing."""
    settings = get_settings()
    client = ApiClient(settings.base_url, token)
    try:
        try:
            spec = client.claim(run_id, attempt=attempt, worker=socket.gethostname())
        except RunGone as exc:
            log.info("training run %s attempt %s not claimable: %s", run_id, attempt, exc)
            return
        reporter = Reporter(client, run_id, attempt, float(spec.get("heartbeat_s", 10)))
        reporter.start()
        try:
            status, error, checkpoint = _train(client, spec, reporter)
        finally:
            reporter.stop()
        if reporter.gone:
            log.info("training run %s attempt %s ended on the server: %s", run_id, attempt,
                     reporter.gone)
            return
        client.finish(run_id, attempt=attempt, status=status, error=error,
                      checkpoint=checkpoint)
    except RunGone as exc:
        log.info("training run %s attempt %s: %s", run_id, attempt, exc)
    finally:
        client.close()


def _train(client: ApiClient, spec: dict[str, Any], reporter: Reporter
           ) -> tuple[str, str | None, dict[str, Any] | None]:
    from worker.training.trainer import Cancelled, TrainSpec, train

    settings = get_settings()
    snapshot = spec["snapshot"]
    out = (settings.resolved_artifacts_dir / f"project-{spec['project_id']}"
           / f"run-{spec['run_id']}-attempt-{spec['attempt']}")
    try:
        with tempfile.TemporaryDirectory(prefix="tandem-train-") as tmp:
            files = {}
            for f in snapshot["files"]:
                reporter.line(f"downloading {f['name']} ({f['rows']} rows)")
                files[f["name"].split(".")[0]] = client.download(
                    f["url"], Path(tmp) / f["name"], sha256=f["sha256"])
            reporter.line("sha256 checked; training starts")
            result = train(
                TrainSpec(method=spec["method"], base_model=spec["base_model"],
                          train_file=files["train"], eval_file=files.get("test"),
                          output_dir=out, hyperparameters=spec["hyperparameters"],
                          card={"run_id": spec["run_id"], "attempt": spec["attempt"],
                                "project_id": spec["project_id"], "snapshot": snapshot}),
                on_metrics=reporter.metrics, on_log=reporter.line,
                should_stop=reporter.cancel.is_set)
    except Cancelled:
        return "cancelled", None, None
    except Exception as exc:  # noqa: BLE001  (reported to the server, with the traceback)
        reporter.line(traceback.format_exc()[-4000:])
        return "failed", f"{type(exc).__name__}: {exc}"[:2000], None
    return "succeeded", None, {"uri": str(result.checkpoint_dir), "metrics": result.metrics}
