"""The review queue: keyboard first, one AI label at a time."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.deps import DbSession, FormBody, require_user
from app.consensus import service as consensus
from app.core.errors import BadRequest
from app.core.templating import is_htmx, render
from app.models import Project, User
from app.projects.policies import Action, authorize
from app.reviewing import service

router = APIRouter(include_in_schema=False)


def _panel(request: Request, db: Session, project: Project, *, notice: str | None = None,
           skip: list[int] | None = None, page: bool = False) -> Response:
    task = service.next_review(db, project=project, skip=skip)
    return render(request, "reviewing/page.html" if page else "reviewing/_task.html", {
        "project": project, "task": task, "notice": notice, "skip": skip or [],
        "idempotency_key": uuid.uuid4().hex})


@router.get("/projects/{project_id}/review")
def review_page(request: Request, project_id: int, user: User = Depends(require_user),
                db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.REVIEW)
    return _panel(request, db, access.project, page=True)


@router.post("/projects/{project_id}/review")
def submit(request: Request, project_id: int, form: FormData = FormBody,
           user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.REVIEW)
    skip = [int(x) for x in str(form.get("skip") or "").split(",") if x.strip().isdigit()]
    try:
        label_id = int(str(form.get("ai_label_id")))
        best = int(str(form["best_response_id"])) if form.get("best_response_id") else None
    except ValueError:
        raise BadRequest("The review form is incomplete.") from None
    action = str(form.get("action") or ("override" if best is not None else ""))
    if action == "skip":
        skip.append(label_id)
        notice = "Skipped for now."
    else:
        service.submit_review(db, project=access.project, user=user, ai_label_id=label_id,
                              action=action, best_response_id=best,
                              edit_text=str(form.get("edit_text") or "") or None,
                              comment=str(form.get("comment") or ""),
                              idempotency_key=str(form.get("idempotency_key") or ""))
        notice = "Review saved."
    if not is_htmx(request):
        return RedirectResponse(f"/projects/{project_id}/review", status_code=303)
    return _panel(request, db, access.project, notice=notice, skip=skip)


def _adjudication_panel(request: Request, db: Session, project: Project, *,
                        notice: str | None = None, skip: list[int] | None = None,
                        page: bool = False) -> Response:
    task = consensus.next_adjudication(db, project=project, skip=skip)
    name = "reviewing/adjudicate.html" if page else "reviewing/_adjudication.html"
    return render(request, name, {"project": project, "task": task, "notice": notice,
                                  "skip": skip or [], "idempotency_key": uuid.uuid4().hex})


@router.get("/projects/{project_id}/adjudicate")
def adjudication_page(request: Request, project_id: int, user: User = Depends(require_user),
                      db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.REVIEW)
    consensus.refresh_for_page(db, project_id=project_id)
    return _adjudication_panel(request, db, access.project, page=True)


def _ids(value: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise BadRequest("An order is response ids separated by commas.") from None


@router.post("/projects/{project_id}/adjudicate")
def adjudicate(request: Request, project_id: int, form: FormData = FormBody,
               user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.REVIEW)
    skip = [int(x) for x in str(form.get("skip") or "").split(",") if x.strip().isdigit()]
    try:
        item_id = int(str(form.get("item_id")))
    except ValueError:
        raise BadRequest("The adjudication form is incomplete.") from None
    action = str(form.get("action") or "")
    if action == "skip":
        skip.append(item_id)
        notice = "Skipped for now."
    else:
        choice = str(form.get("ranking") or "")
        ranking: list[int] | str | None
        if action == "order":
            ranking = str(form.get("order") or "")  # letters, best first
        else:
            ranking = None if choice == "tie" else _ids(choice)
        if ranking == "" or ranking == []:
            raise BadRequest("Choose the best response, a tie, or type the order.")
        consensus.adjudicate(db, project=access.project, user=user, item_id=item_id,
                             ranking=ranking, comment=str(form.get("comment") or ""),
                             idempotency_key=str(form.get("idempotency_key") or ""))
        notice = "Decision saved."
    if not is_htmx(request):
        return RedirectResponse(f"/projects/{project_id}/adjudicate", status_code=303)
    return _adjudication_panel(request, db, access.project, notice=notice, skip=skip)
