"""Training over the JSON API: admins start, watch, cancel and restart runs; training
workers claim a run, report metrics (their heartbeat) and finish it, with the run's token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from app.auth.deps import ApiPrincipal, DbSession, api_principal
from app.core.errors import Forbidden, NotFound
from app.models import ModelCheckpoint, TrainingRun
from app.projects.policies import Action, authorize
from app.training import repository, service
from app.training.schemas import ClaimIn, FinishIn, MetricsIn, TrainingRunIn

router = APIRouter(prefix="/api/v1", tags=["training"])


def run_json(view: service.RunView, *, with_metrics: bool = True) -> dict[str, Any]:
    r = view.run
    out: dict[str, Any] = {
        "id": r.id, "project_id": r.project_id, "snapshot_id": r.snapshot_id,
        "method": r.method, "base_model": r.base_model, "hyperparameters": r.hyperparameters,
        "status": r.status, "attempt": r.attempt, "cancel_requested": r.cancel_requested,
        "worker": r.worker, "step": r.step, "max_steps": r.max_steps, "percent": view.percent,
        "eta_seconds": r.eta_seconds, "latest": r.latest, "error": r.error,
        "heartbeat_at": r.heartbeat_at.isoformat() if r.heartbeat_at else None,
        "created_at": r.created_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "checkpoint": checkpoint_json(view.checkpoint) if view.checkpoint else None,
        "log_tail": r.log_tail[-4000:],
    }
    if with_metrics:
        out["metrics"] = [{"step": m.step, **m.values} for m in view.metrics]
    return out


def checkpoint_json(c: ModelCheckpoint) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "kind": c.kind, "uri": c.uri, "run_id": c.run_id,
            "snapshot_id": c.snapshot_id, "base_model": c.base_model, "metrics": c.metrics,
            "created_at": c.created_at.isoformat()}


def _admin(p: ApiPrincipal, db: Session, project_id: int):  # noqa: ANN202
    p.check(project_id=project_id, scope="train")
    return authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)


@router.post("/projects/{project_id}/training-runs", status_code=202)
def api_start_run(project_id: int, data: TrainingRunIn,
                  p: ApiPrincipal = Depends(api_principal),
                  db: Session = DbSession) -> dict[str, Any]:
    """Queue a DPO or reward-model run on a snapshot, for a training worker (queue `train`)."""
    access = _admin(p, db, project_id)
    run = service.start_run(db, project=access.project, user=p.user, data=data)
    return run_json(service.run_view(db, run=run))


@router.get("/projects/{project_id}/training-runs")
def api_list_runs(project_id: int, p: ApiPrincipal = Depends(api_principal),
                  db: Session = DbSession) -> list[dict[str, Any]]:
    _admin(p, db, project_id)
    service.expire_silent_runs(db)
    return [run_json(service.run_view(db, run=r), with_metrics=False)
            for r in repository.list_runs(db, project_id=project_id)]


@router.get("/projects/{project_id}/training-runs/{run_id}")
def api_get_run(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
                db: Session = DbSession) -> dict[str, Any]:
    _admin(p, db, project_id)
    service.expire_silent_runs(db)
    return run_json(service.run_view(db, run=service.get_run(db, project_id=project_id,
                                                             run_id=run_id)))


@router.post("/projects/{project_id}/training-runs/{run_id}/cancel")
def api_cancel_run(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
                   db: Session = DbSession) -> dict[str, Any]:
    access = _admin(p, db, project_id)
    run = service.cancel_run(db, project=access.project, run_id=run_id)
    return run_json(service.run_view(db, run=run), with_metrics=False)


@router.post("/projects/{project_id}/training-runs/{run_id}/restart", status_code=202)
def api_restart_run(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
                    db: Session = DbSession) -> dict[str, Any]:
    access = _admin(p, db, project_id)
    run = service.restart_run(db, project=access.project, user=p.user, run_id=run_id)
    return run_json(service.run_view(db, run=run), with_metrics=False)


@router.get("/projects/{project_id}/checkpoints")
def api_checkpoints(project_id: int, p: ApiPrincipal = Depends(api_principal),
                    db: Session = DbSession) -> list[dict[str, Any]]:
    _admin(p, db, project_id)
    return [checkpoint_json(c) for c in repository.checkpoints(db, project_id=project_id)]


# -- what a training worker calls, with the token its task carried ------------------------

def _worker(p: ApiPrincipal, db: Session, run_id: int) -> int:
    """The calling worker token's id. A browser session or another kind of token is refused
    before the run is looked up, and another project's worker gets 404, so neither learns
    which runs exist."""
    if p.token is None or "worker" not in p.token.scopes:
        raise Forbidden("Only a training run's own worker token may do this.")
    run: TrainingRun | None = repository.get_run(db, run_id=run_id)
    if run is None or run.project_id != p.token.project_id:
        raise NotFound("No such training run.")
    return p.token.id


@router.post("/training-runs/{run_id}/claim")
def api_claim(run_id: int, data: ClaimIn, p: ApiPrincipal = Depends(api_principal),
              db: Session = DbSession) -> dict[str, Any]:
    """Take a queued run: 200 with what to train and the snapshot's files; 409 if the run
    is not queued any more (cancelled, or another worker has it)."""
    return service.claim(db, run_id=run_id, token_id=_worker(p, db, run_id), data=data)


@router.post("/training-runs/{run_id}/report")
def api_report(run_id: int, data: MetricsIn, p: ApiPrincipal = Depends(api_principal),
               db: Session = DbSession) -> dict[str, Any]:
    """Metrics and log lines; also the heartbeat. The answer says whether to stop."""
    return service.report(db, run_id=run_id, token_id=_worker(p, db, run_id), data=data)


@router.post("/training-runs/{run_id}/finish")
def api_finish(run_id: int, data: FinishIn, p: ApiPrincipal = Depends(api_principal),
               db: Session = DbSession) -> dict[str, Any]:
    run = service.finish(db, run_id=run_id, token_id=_worker(p, db, run_id), data=data)
    return {"id": run.id, "status": run.status}
