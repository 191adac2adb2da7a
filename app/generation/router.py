"""Generation runs from the training page and the API; the rounds overview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.deps import ApiPrincipal, DbSession, FormBody, api_principal, require_user
from app.core.errors import BadRequest
from app.core.templating import render
from app.generation import service
from app.generation.schemas import GenerationIn, SamplingIn
from app.models import GenerationRun, User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["generation"])


def generation_json(run: GenerationRun) -> dict[str, Any]:
    return {"id": run.id, "project_id": run.project_id, "round": run.round,
            "source_round": run.source_round, "k": run.k, "provider": run.provider,
            "model": run.model, "checkpoint_id": run.checkpoint_id, "sampling": run.sampling,
            "status": run.status, "done": run.done, "total": run.total, "error": run.error}


def generation_in_from_form(form: FormData) -> GenerationIn:
    def value(key: str) -> str | None:
        return str(form.get(key) or "").strip() or None

    try:
        sampling = {k: v for k, v in {
            "temperature": value("temperature"), "top_p": value("top_p"),
            "max_new_tokens": value("max_new_tokens"), "seed": value("seed")}.items() if v}
        return GenerationIn(k=int(value("k") or 2), provider=value("provider") or "local",
                            model=value("model") or "smollm2", base_url=value("base_url"),
                            api_key_env=value("api_key_env"),
                            source_round=int(value("source_round")) if value("source_round")
                            else None, sampling=SamplingIn(**sampling))
    except (ValueError, ValidationError) as exc:
        raise BadRequest(f"Check the generation form: {exc}") from None


@router.post("/projects/{project_id}/generations")
def start(project_id: int, form: FormData = FormBody, user: User = Depends(require_user),
          db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    run = service.start_generation(db, project=access.project, user=user,
                                   data=generation_in_from_form(form))
    return RedirectResponse(f"/projects/{project_id}/training#generation-{run.id}",
                            status_code=303)


@router.get("/projects/{project_id}/generations/{run_id}")
def partial(request: Request, project_id: int, run_id: int,
            user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    return render(request, "generation/_run.html", {
        "project": access.project,
        "g": service.get_generation(db, project_id=project_id, run_id=run_id)})


@api.post("/projects/{project_id}/generation-runs", status_code=202)
def api_start(project_id: int, data: GenerationIn, p: ApiPrincipal = Depends(api_principal),
              db: Session = DbSession) -> dict[str, Any]:
    """Ask a model for k responses to each prompt; they become the next round's items."""
    p.check(project_id=project_id, scope="train")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    return generation_json(service.start_generation(db, project=access.project, user=p.user,
                                                    data=data))


@api.get("/projects/{project_id}/generation-runs/{run_id}")
def api_get(project_id: int, run_id: int, p: ApiPrincipal = Depends(api_principal),
            db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="train")
    authorize(db, user=p.user, project_id=project_id, action=Action.MANAGE)
    return generation_json(service.get_generation(db, project_id=project_id, run_id=run_id))


@api.get("/projects/{project_id}/rounds")
def api_rounds(project_id: int, p: ApiPrincipal = Depends(api_principal),
               db: Session = DbSession) -> list[dict[str, Any]]:
    """Each labeling round: items, labels, the generation run, snapshots and checkpoints."""
    p.check(project_id=project_id, scope="read")
    authorize(db, user=p.user, project_id=project_id, action=Action.SEE_PROGRESS)
    return [{"round": r.number, "items": r.items, "labels": r.labels,
             "generation_run": r.generation_run.id if r.generation_run else None,
             "snapshots": [s.id for s in r.snapshots or []],
             "checkpoints": [c.id for c in r.checkpoints or []]}
            for r in service.rounds(db, project_id=project_id)]
