"""Judge configuration and runs over the JSON API (the pages come with the judge UI)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from app.auth.deps import ApiPrincipal, DbSession, api_principal
from app.core.errors import NotFound
from app.judging import repository, service
from app.judging.schemas import JudgeConfigIn, RunIn
from app.models import JudgeConfig, JudgeRun
from app.projects.policies import Action, authorize

api = APIRouter(prefix="/api/v1", tags=["judging"])


def _config_json(config: JudgeConfig) -> dict[str, Any]:
    return {**service.config_snapshot(config), "show_suggestions": config.show_suggestions}


def _run_json(p: service.RunProgress) -> dict[str, Any]:
    run = p.run
    return {"id": run.id, "status": run.status, "rule_set_id": run.rule_set_id,
            "selection": run.selection, "counts": p.counts, "total": p.total,
            "percent": p.percent, "items_per_s": round(p.items_per_s, 3),
            "tokens": {"prompt": p.totals["prompt_tokens"],
                       "completion": p.totals["completion_tokens"]},
            "routes": p.routes, "inconsistency_rate": round(p.inconsistency_rate, 4),
            "failures": [{"item_id": f.item_id, "error": f.error} for f in p.failures],
            "error": run.error}


def _run(db: Session, project_id: int, run_id: int) -> JudgeRun:
    run = repository.get_run(db, run_id=run_id)
    if run is None or run.project_id != project_id:
        raise NotFound("No such judge run.")
    return run


@api.get("/projects/{project_id}/judge")
def get_judge(project_id: int, p: ApiPrincipal = Depends(api_principal),
              db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="judge")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    return _config_json(service.get_config(db, project=access.project))


@api.put("/projects/{project_id}/judge")
def put_judge(project_id: int, body: JudgeConfigIn, p: ApiPrincipal = Depends(api_principal),
              db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="judge")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    return _config_json(service.update_config(db, project=access.project, data=body))


@api.post("/projects/{project_id}/judge-runs", status_code=202)
def start_run(project_id: int, body: RunIn, p: ApiPrincipal = Depends(api_principal),
              db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="judge")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    run = service.start_run(db, project=access.project, user=p.user, data=body)
    return _run_json(service.progress(db, run=run))


@api.get("/projects/{project_id}/judge-runs/{run_id}")
def get_run(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
            db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="judge")
    authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    return _run_json(service.progress(db, run=_run(db, project_id, run_id)))


@api.post("/projects/{project_id}/judge-runs/{run_id}/cancel")
def cancel_run(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
               db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="judge")
    authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    run = _run(db, project_id, run_id)
    service.cancel_run(db, run=run)
    return _run_json(service.progress(db, run=run))


@api.post("/projects/{project_id}/judge-runs/{run_id}/resume", status_code=202)
def resume_run(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
               db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="judge")
    authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    run = _run(db, project_id, run_id)
    service.resume_run(db, run=run)
    return _run_json(service.progress(db, run=run))
