"""Project pages: list, create, overview with progress, settings and members."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth import repository as users
from app.auth.deps import DbSession, require_user
from app.auth.repository import list_tokens
from app.core.errors import BadRequest, Forbidden
from app.core.templating import render
from app.labeling.service import current_task, project_progress
from app.models import User
from app.projects import repository, service
from app.projects.policies import Action, authorize, can_create_projects
from app.projects.schemas import MemberIn, ProjectIn, format_rules, parse_rules_text

router = APIRouter(include_in_schema=False)


def _project_in(name: str, task_type: str, instructions_md: str, overlap_k: int,
                lease_minutes: int, rules_text: str, **policy: object) -> ProjectIn:
    try:
        return ProjectIn(name=name, task_type=task_type, instructions_md=instructions_md,
                         overlap_k=overlap_k, lease_minutes=lease_minutes,
                         rules=parse_rules_text(rules_text), **policy)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                for e in exc.errors()]
        raise BadRequest("Please fix: " + "; ".join(msgs)) from None


@router.get("/projects")
def list_projects(request: Request, user: User = Depends(require_user),
                  db: Session = DbSession) -> Response:
    return render(request, "projects/list.html", {
        "projects": repository.list_projects_for(db, user=user),
        "can_create": can_create_projects(user),
    })


@router.get("/projects/new")
def new_project_page(request: Request, user: User = Depends(require_user)) -> Response:
    if not can_create_projects(user):
        raise Forbidden("Only site admins create projects.")
    return render(request, "projects/new.html", {})


@router.post("/projects")
def create_project(name: str = Form(...), task_type: str = Form(...),
                   instructions_md: str = Form(""), overlap_k: int = Form(1),
                   lease_minutes: int = Form(30), rules_text: str = Form(""),
                   weighting: str = Form("none"), conflict_threshold: float = Form(0.6),
                   gold_rate: float = Form(0.1),
                   user: User = Depends(require_user), db: Session = DbSession) -> Response:
    if not can_create_projects(user):
        raise Forbidden("Only site admins create projects.")
    data = _project_in(name, task_type, instructions_md, overlap_k, lease_minutes, rules_text,
                       weighting=weighting, conflict_threshold=conflict_threshold,
                       gold_rate=gold_rate)
    project = service.create_project(db, data=data, creator=user)
    return RedirectResponse(f"/projects/{project.id}/settings", status_code=303)


@router.get("/projects/{project_id}")
def project_overview(request: Request, project_id: int, user: User = Depends(require_user),
                     db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.VIEW)
    # Only those who see the numbers pay for counting them.
    progress = (project_progress(db, project=access.project)
                if access.can(Action.SEE_PROGRESS) else None)
    _, rules = service.get_rules(db, project_id=project_id)
    return render(request, "projects/overview.html", {
        "project": access.project, "access": access, "Action": Action, "progress": progress,
        "rules": rules,
        "has_task": current_task(db, project=access.project, user=user) is not None,
    })


@router.get("/projects/{project_id}/progress")
def project_progress_partial(request: Request, project_id: int,
                             user: User = Depends(require_user),
                             db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.SEE_PROGRESS)
    return render(request, "projects/_progress.html", {
        "project": access.project, "progress": project_progress(db, project=access.project),
    })


@router.get("/projects/{project_id}/settings")
def settings_page(request: Request, project_id: int, user: User = Depends(require_user),
                  db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    return _settings_page(request, db, access.project)


def _settings_page(request: Request, db: Session, project, *,  # noqa: ANN001
                   new_token: str | None = None) -> Response:
    rule_set, rules = service.get_rules(db, project_id=project.id)
    return render(request, "projects/settings.html", {
        "project": project, "rule_set": rule_set, "rules_text": format_rules(rules),
        "members": repository.list_members(db, project_id=project.id),
        "all_users": users.list_users(db),
        "tokens": list_tokens(db, project_id=project.id),
        "new_token": new_token,
    }, headers={"Cache-Control": "no-store"} if new_token else None)


@router.post("/projects/{project_id}/settings")
def save_settings(project_id: int, name: str = Form(...), instructions_md: str = Form(""),
                  overlap_k: int = Form(1), lease_minutes: int = Form(30),
                  rules_text: str = Form(""), weighting: str = Form("none"),
                  conflict_threshold: float = Form(0.6), gold_rate: float = Form(0.1),
                  user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    data = _project_in(name, access.project.task_type, instructions_md, overlap_k,
                       lease_minutes, rules_text, weighting=weighting,
                       conflict_threshold=conflict_threshold, gold_rate=gold_rate)
    service.update_project(db, project=access.project, data=data)
    return RedirectResponse(f"/projects/{project_id}/settings", status_code=303)


@router.post("/projects/{project_id}/members")
def add_member(project_id: int, email: str = Form(...), role: str = Form(...),
               user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    try:
        data = MemberIn(email=email, role=role)
    except ValidationError:
        raise BadRequest("Choose a role: admin, reviewer or labeler.") from None
    service.add_member(db, project=access.project, data=data)
    return RedirectResponse(f"/projects/{project_id}/settings#members", status_code=303)


@router.post("/projects/{project_id}/members/{member_user_id}/remove")
def remove_member(project_id: int, member_user_id: int, user: User = Depends(require_user),
                  db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    service.remove_member(db, project=access.project, user_id=member_user_id)
    return RedirectResponse(f"/projects/{project_id}/settings#members", status_code=303)


@router.post("/projects/{project_id}/tokens")
def create_token(request: Request, project_id: int, name: str = Form("token"),
                 scopes: list[str] = Form(...), user: User = Depends(require_user),
                 db: Session = DbSession) -> Response:
    """Issue an API token; its secret is shown on this one response and never again."""
    from app.auth.service import create_api_token

    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    issued = create_api_token(db, user=user, project_id=project_id, name=name, scopes=scopes)
    return _settings_page(request, db, access.project, new_token=issued.secret)


@router.post("/projects/{project_id}/tokens/{token_id}/revoke")
def revoke_token(project_id: int, token_id: int, user: User = Depends(require_user),
                 db: Session = DbSession) -> Response:
    from app.auth.service import revoke_api_token

    authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    revoke_api_token(db, project_id=project_id, token_id=token_id)
    return RedirectResponse(f"/projects/{project_id}/settings#tokens", status_code=303)
