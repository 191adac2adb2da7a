"""Training runs: start on a snapshot, let a training worker claim and report, cancel,
restart, and fail runs whose worker went silent.

The training worker may run on another machine: it never touches the database. It gets
the run's id, attempt and an API token through the ``train`` queue, and does everything
else over the HTTP API (claim, download the snapshot, report metrics, finish). Each attempt
has its own token, revoked when the attempt ends, so a worker from an earlier attempt can
no longer report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.auth.service import create_api_token, revoke_api_token
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import BadRequest, Conflict, NotFound
from app.core.jobs import enqueue_after_commit
from app.exports.formats import PREFERENCE_FORMATS
from app.exports.snapshots import get_snapshot
from app.models import ExportSnapshot, ModelCheckpoint, Project, TrainingMetric, TrainingRun, User
from app.models.exports import SnapshotStatus
from app.models.training import FINISHED, TrainingStatus
from app.models.types import utcnow
from app.training import repository
from app.training.schemas import ClaimIn, FinishIn, MetricsIn, TrainingRunIn

LOG_TAIL_CHARS = 20_000


def _validate(method: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    from worker.training.hyperparameters import validate_hyperparameters

    try:
        return validate_hyperparameters(method, hyperparameters)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def named_checkpoint(db: Session, *, project_id: int, name: str) -> ModelCheckpoint | None:
    """The checkpoint ``checkpoint:N`` names in this project; None for any other model
    name; NotFound for a checkpoint that is not there."""
    if not name.startswith("checkpoint:"):
        return None
    try:
        checkpoint = db.get(ModelCheckpoint, int(name.split(":", 1)[1]))
    except ValueError:
        checkpoint = None
    if checkpoint is None or checkpoint.project_id != project_id:
        raise NotFound("No such checkpoint in this project.")
    return checkpoint


def resolve_base_model(db: Session, *, project_id: int, base_model: str) -> str:
    """``checkpoint:N`` names a checkpoint registered in this project: its folder."""
    checkpoint = named_checkpoint(db, project_id=project_id, name=base_model)
    if checkpoint is not None:
        return checkpoint.uri
    return base_model.strip() or "smollm2"


def start_run(db: Session, *, project: Project, user: User, data: TrainingRunIn) -> TrainingRun:
    snapshot = get_snapshot(db, project_id=project.id, snapshot_id=data.snapshot_id)
    if snapshot.status != SnapshotStatus.SUCCEEDED:
        raise BadRequest("That snapshot is not finished yet.")
    if snapshot.format not in PREFERENCE_FORMATS:
        raise BadRequest("DPO and reward models train on preference pairs: choose a "
                         "snapshot in the standard or conversational format.")
    run = TrainingRun(project_id=project.id, snapshot_id=snapshot.id, method=data.method,
                      base_model=data.base_model.strip() or "smollm2",
                      hyperparameters=_validate(data.method, data.hyperparameters),
                      status=TrainingStatus.QUEUED, created_by_id=user.id)
    db.add(run)
    db.flush()
    _queue_attempt(db, run=run, user=user)
    return run


def _queue_attempt(db: Session, *, run: TrainingRun, user: User) -> None:
    issued = create_api_token(db, user=user, project_id=run.project_id,
                              name=f"training run {run.id} attempt {run.attempt}",
                              scopes=["worker"])
    run.api_token_id = issued.token.id
    db.flush()
    enqueue_after_commit(db, "training.run", run.id, run.attempt, issued.secret)


def worker_may_download(db: Session, *, token_id: int, snapshot_id: int) -> bool:
    """A worker token reads only the snapshot of the run it was issued for, while it runs."""
    run = repository.run_of_token(db, token_id=token_id)
    return run is not None and run.snapshot_id == snapshot_id and run.status in (
        TrainingStatus.QUEUED, TrainingStatus.RUNNING)


def get_run(db: Session, *, project_id: int, run_id: int) -> TrainingRun:
    run = repository.get_run(db, run_id=run_id)
    if run is None or run.project_id != project_id:
        raise NotFound("No such training run in this project.")
    return run


def cancel_run(db: Session, *, project: Project, run_id: int) -> TrainingRun:
    """A queued run stops now; a running one at its worker's next report."""
    run = get_run(db, project_id=project.id, run_id=run_id)
    if run.status == TrainingStatus.QUEUED:
        _end(db, run, TrainingStatus.CANCELLED, error=None)
    elif run.status == TrainingStatus.RUNNING:
        run.cancel_requested = True
    db.flush()
    return run


def restart_run(db: Session, *, project: Project, user: User, run_id: int) -> TrainingRun:
    """A failed or cancelled run starts again as a new attempt (its metrics kept apart)."""
    run = get_run(db, project_id=project.id, run_id=run_id)
    if run.status not in (TrainingStatus.FAILED, TrainingStatus.CANCELLED):
        raise Conflict("Only a failed or cancelled run can be restarted.")
    run.attempt += 1
    run.status, run.cancel_requested, run.error = TrainingStatus.QUEUED, False, None
    run.step, run.max_steps, run.eta_seconds, run.latest = 0, 0, None, {}
    run.worker, run.heartbeat_at, run.started_at, run.finished_at = None, None, None, None
    run.log_tail = ""
    _queue_attempt(db, run=run, user=user)
    return run


def _end(db: Session, run: TrainingRun, status: TrainingStatus, *, error: str | None) -> None:
    run.status, run.error, run.finished_at = status, error, utcnow()
    if run.api_token_id is not None:
        revoke_api_token(db, project_id=run.project_id, token_id=run.api_token_id)


def _current(db: Session, *, run_id: int, token_id: int | None, attempt: int) -> TrainingRun:
    """The run, locked, if this token belongs to its current attempt."""
    run = repository.get_run(db, run_id=run_id, lock=True)
    if run is None:
        raise NotFound("No such training run.")
    if token_id is None or run.api_token_id != token_id or run.attempt != attempt:
        raise Conflict("This token belongs to another attempt of the run.")
    return run


def claim(db: Session, *, run_id: int, token_id: int | None, data: ClaimIn) -> dict[str, Any]:
    """A training worker takes the run: what to train, on which files."""
    run = _current(db, run_id=run_id, token_id=token_id, attempt=data.attempt)
    if run.status != TrainingStatus.QUEUED:
        raise Conflict(f"The run is {run.status}; nothing to do.")
    snapshot = db.get(ExportSnapshot, run.snapshot_id)
    now = utcnow()
    run.status, run.worker, run.started_at, run.heartbeat_at = (
        TrainingStatus.RUNNING, data.worker, now, now)
    db.flush()
    files = (snapshot.manifest or {}).get("files", [])
    return {
        "run_id": run.id, "attempt": run.attempt, "project_id": run.project_id,
        "method": run.method,
        "base_model": resolve_base_model(db, project_id=run.project_id,
                                         base_model=run.base_model),
        "hyperparameters": run.hyperparameters,
        "heartbeat_s": get_settings().training_heartbeat_s,
        "snapshot": {"id": snapshot.id, "version": snapshot.version, "name": snapshot.name,
                     "format": snapshot.format, "container": snapshot.container,
                     "manifest_sha256": snapshot.sha256,
                     "files": [{"name": f["name"], "sha256": f["sha256"], "rows": f["rows"],
                                "url": f"/api/v1/projects/{run.project_id}/snapshots/"
                                       f"{snapshot.id}/files/{f['name']}"} for f in files]},
    }


def report(db: Session, *, run_id: int, token_id: int | None, data: MetricsIn) -> dict[str, Any]:
    """Metrics and log lines from the worker; doubles as its heartbeat. Says whether to stop."""
    run = _current(db, run_id=run_id, token_id=token_id, attempt=data.attempt)
    if run.status != TrainingStatus.RUNNING:
        return {"cancel": True, "status": run.status}
    now = utcnow()
    for raw in data.points:
        point = _numbers(raw)
        step = int(point.get("step") or run.step)
        db.add(TrainingMetric(run_id=run.id, attempt=run.attempt, step=step,
                              values=point, created_at=now))
        run.step = max(run.step, step)
        run.max_steps = int(point.get("max_steps") or run.max_steps)
        run.eta_seconds = point.get("eta_seconds", run.eta_seconds)
        run.latest = {**run.latest, **point}
    if data.log:
        run.log_tail = (run.log_tail + "".join(f"{line.rstrip()}\n" for line in data.log)
                        )[-LOG_TAIL_CHARS:]
    run.heartbeat_at = now
    db.flush()
    return {"cancel": run.cancel_requested, "status": run.status}


def _numbers(point: dict[str, Any]) -> dict[str, float | int | None]:
    """A metrics row as the pages can draw it: numbers (or None) under short names only."""
    out: dict[str, float | int | None] = {}
    for key, value in point.items():
        if not isinstance(key, str) or len(key) > 100:
            continue
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                             and math.isfinite(value)):
            out[key] = value
    for key in ("step", "max_steps"):
        if key in out and out[key] is not None:
            out[key] = max(0, int(out[key]))
    return out


def finish(db: Session, *, run_id: int, token_id: int | None, data: FinishIn) -> TrainingRun:
    run = _current(db, run_id=run_id, token_id=token_id, attempt=data.attempt)
    if run.status in FINISHED:
        return run  # reported twice, or failed by the watchdog meanwhile
    if data.status == TrainingStatus.SUCCEEDED:
        if data.checkpoint is None:
            raise BadRequest("A finished run registers its checkpoint.")
        snapshot = db.get(ExportSnapshot, run.snapshot_id)
        db.add(ModelCheckpoint(
            project_id=run.project_id, run_id=run.id, snapshot_id=run.snapshot_id,
            kind=run.method, uri=data.checkpoint.uri, base_model=run.base_model,
            metrics=data.checkpoint.metrics,
            name=f"{run.method} run {run.id} on snapshot {snapshot.id} v{snapshot.version}"))
    _end(db, run, TrainingStatus(data.status), error=data.error)
    db.flush()
    return run


def fail_stale_runs() -> int:
    """Runs whose worker stopped reporting (killed, machine lost) are marked failed."""
    timeout = get_settings().training_heartbeat_timeout_s
    now = utcnow()
    with session_scope(write=True) as db:
        stale = repository.stale_running(db, before=now - timedelta(seconds=timeout))
        for run in stale:
            _end(db, run, TrainingStatus.FAILED,
                 error=f"The training worker {run.worker or ''} sent no heartbeat for "
                       f"{timeout:g} s: it stopped or lost its connection. Restart the run.")
        return len(stale)


def expire_silent_runs(db: Session) -> None:
    """Before a read shows runs: fail the silent ones, then start a fresh read snapshot so
    the page sees it (SQLite keeps one snapshot per read transaction). GETs only."""
    if fail_stale_runs():
        db.commit()


@dataclass(frozen=True)
class RunView:
    run: TrainingRun
    snapshot: ExportSnapshot
    metrics: list[TrainingMetric]
    checkpoint: ModelCheckpoint | None

    @property
    def percent(self) -> int:
        r = self.run
        if r.status == TrainingStatus.SUCCEEDED:
            return 100
        return min(100, round(100 * r.step / r.max_steps)) if r.max_steps else 0


def run_view(db: Session, *, run: TrainingRun) -> RunView:
    return RunView(run=run, snapshot=db.get(ExportSnapshot, run.snapshot_id),
                   metrics=repository.metrics(db, run_id=run.id, attempt=run.attempt),
                   checkpoint=repository.checkpoint_of_run(db, run_id=run.id))
