"""Judge pages: configure and preview the judge, start runs, watch them live."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.deps import DbSession, FormBody, require_user
from app.core.errors import BadRequest, NotFound
from app.core.templating import is_htmx, render
from app.judging import repository, service
from app.judging.agreement import judge_report
from app.judging.schemas import JudgeConfigIn, RunIn
from app.models import JudgePreview, User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)

CONFIG_FIELDS = ("provider", "model", "base_url", "api_key_env", "template", "temperature",
                 "max_tokens", "top_logprobs", "request_timeout_s", "confidence_threshold",
                 "review_fraction",
                 "max_concurrency", "requests_per_minute", "batch_size")


def config_from_form(form: FormData) -> JudgeConfigIn:
    data = {f: form.get(f) for f in CONFIG_FIELDS if form.get(f) not in (None, "")}
    data["judge_rules"] = form.get("judge_rules") == "on"
    data["show_suggestions"] = form.get("show_suggestions") == "on"
    try:
        return JudgeConfigIn.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("Please fix: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from None


def _page(request: Request, db: Session, access, **extra) -> Response:  # noqa: ANN001, ANN003
    config = service.get_config(db, project=access.project)
    runs = repository.list_runs(db, project_id=access.project.id)
    return render(request, "judging/page.html", {
        "project": access.project, "config": config,
        "report": judge_report(db, project_id=access.project.id),
        "runs": [service.progress(db, run=r) for r in runs], **extra})


@router.get("/projects/{project_id}/judge")
def judge_page(request: Request, project_id: int, user: User = Depends(require_user),
               db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    return _page(request, db, access)


@router.post("/projects/{project_id}/judge/config")
def save_config(project_id: int, form: FormData = FormBody,
                user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    service.update_config(db, project=access.project, data=config_from_form(form))
    return RedirectResponse(f"/projects/{project_id}/judge?saved=1", status_code=303)


@router.post("/projects/{project_id}/judge/preview")
def preview(request: Request, project_id: int, form: FormData = FormBody,
            user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    row = service.start_preview(db, project=access.project,
                                data=config_from_form(form),
                                external_id=str(form.get("preview_external_id") or "").strip())
    return render(request, "judging/_preview.html", {"project": access.project, "p": row})


@router.get("/projects/{project_id}/judge/previews/{preview_id}")
def preview_status(request: Request, project_id: int, preview_id: int,
                   user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    row = db.get(JudgePreview, preview_id)
    if row is None or row.project_id != project_id:
        raise NotFound("No such preview.")
    return render(request, "judging/_preview.html", {"project": access.project, "p": row})


@router.post("/projects/{project_id}/judge/runs")
def start_run(project_id: int, mode: str = Form("all"), external_id_prefix: str = Form(""),
              user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    try:
        data = RunIn(mode=mode, external_id_prefix=external_id_prefix)
    except ValidationError:
        raise BadRequest("Choose which items to judge: all or unlabeled.") from None
    run = service.start_run(db, project=access.project, user=user, data=data)
    return RedirectResponse(f"/projects/{project_id}/judge/runs/{run.id}", status_code=303)


def _run_view(request: Request, db: Session, project, run_id: int) -> Response:  # noqa: ANN001
    run = repository.get_run(db, run_id=run_id)
    if run is None or run.project_id != project.id:
        raise NotFound("No such judge run.")
    name = "judging/_run.html" if is_htmx(request) else "judging/run.html"
    return render(request, name, {"project": project, "p": service.progress(db, run=run)})


@router.get("/projects/{project_id}/judge/runs/{run_id}")
def run_page(request: Request, project_id: int, run_id: int,
             user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    return _run_view(request, db, access.project, run_id)


@router.post("/projects/{project_id}/judge/runs/{run_id}/{action}")
def run_action(request: Request, project_id: int, run_id: int, action: str,
               user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    run = repository.get_run(db, run_id=run_id)
    if run is None or run.project_id != project_id or action not in ("cancel", "resume"):
        raise NotFound("No such judge run action.")
    (service.cancel_run if action == "cancel" else service.resume_run)(db, run=run)
    return _run_view(request, db, access.project, run_id)
