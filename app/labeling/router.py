"""The labeling page. Submitting swaps in the next item without a page reload (htmx)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.deps import DbSession, FormBody, require_user, user_posting_form
from app.core.errors import BadRequest, Conflict
from app.core.markdown import render_markdown
from app.core.templating import is_htmx, render
from app.labeling import service
from app.labeling.schemas import LabelIn, scale_to_choice
from app.models import Project, User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)


def _panel(request: Request, project: Project, task: service.Task | None,
           notice: str | None = None, status_code: int = 200, *,
           db: Session | None = None) -> Response:
    if db is not None:
        # Commit before rendering: the item is leased and the label stored either way, and
        # on SQLite the write lock is not held while the page is made (the rows the page
        # shows stay loaded: sessions do not expire them on commit).
        db.commit()
    return render(request, "labeling/_task.html", {
        "project": project, "task": task, "notice": notice, "exhausted": task is None,
        "idempotency_key": uuid.uuid4().hex,
    }, status_code=status_code)


@router.get("/projects/{project_id}/label")
def label_page(request: Request, project_id: int, user: User = Depends(require_user),
               db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.LABEL)
    task = service.current_task(db, project=access.project, user=user)
    return render(request, "labeling/page.html", {
        "project": access.project, "task": task, "notice": None,
        "idempotency_key": uuid.uuid4().hex,
        "instructions": render_markdown(access.project.instructions_md),
    })


# The three routes below run for every item a labeler labels: each checks the login and CSRF
# token in its own thread (user_posting_form) rather than in a dependency's.

@router.post("/projects/{project_id}/label/next")
def take_next(request: Request, project_id: int, form: FormData = FormBody,
              db: Session = DbSession) -> Response:
    user = user_posting_form(request, db, form)
    access = authorize(db, user=user, project_id=project_id, action=Action.LABEL)
    task = service.next_task(db, project=access.project, user=user)
    if is_htmx(request):
        return _panel(request, access.project, task, db=db)
    return RedirectResponse(f"/projects/{project_id}/label", status_code=303)


def label_from_form(form) -> LabelIn:  # noqa: ANN001
    """Read the labeling form: scale, ranking, ratings, edit, rule boxes, rationale."""
    data: dict = {
        "item_id": form.get("item_id"),
        "idempotency_key": form.get("idempotency_key"),
        "rationale": form.get("rationale") or "",
        "time_spent_ms": form.get("time_spent_ms") or None,
    }
    if scale := form.get("scale"):
        if scale not in {"1", "2", "3", "4", "5"}:
            raise BadRequest("Choose A, B or tie on the scale.")
        data["choice"], data["strength"] = scale_to_choice(scale)
    if ranking := form.get("ranking"):
        try:
            data["ranking"] = [int(x) for x in str(ranking).split(",") if x.strip()]
        except ValueError:
            raise BadRequest("The ranking must list the item's response ids, "
                             "separated by commas.") from None
    ratings = {k.removeprefix("rating_"): v for k, v in form.items()
               if k.startswith("rating_") and v}
    if ratings:
        data["ratings"] = ratings
    if form.get("edit_response_id"):
        data["edit_response_id"] = form.get("edit_response_id")
        data["edit_text"] = form.get("edit_text")
    violations: dict[str, list[str]] = {}
    for value in form.getlist("violation"):
        response_id, _, rule_key = str(value).partition(":")
        violations.setdefault(response_id, []).append(rule_key)
    data["rule_violations"] = violations
    try:
        return LabelIn.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise BadRequest("The label form is incomplete or malformed.") from exc


@router.post("/projects/{project_id}/label/submit")
def submit(request: Request, project_id: int, form: FormData = FormBody,
           db: Session = DbSession) -> Response:
    user = user_posting_form(request, db, form)
    access = authorize(db, user=user, project_id=project_id, action=Action.LABEL)
    data = label_from_form(form)
    notice = "Saved."
    try:
        service.submit_label(db, project=access.project, user=user, data=data,
                             then_next=True)
    except Conflict as exc:
        notice = exc.message  # the lease is lost; show why, and move on
    task = service.next_task(db, project=access.project, user=user)
    if is_htmx(request):
        return _panel(request, access.project, task, notice=notice, db=db)
    return RedirectResponse(f"/projects/{project_id}/label", status_code=303)


@router.post("/projects/{project_id}/label/skip")
def skip(request: Request, project_id: int, form: FormData = FormBody,
         db: Session = DbSession) -> Response:
    user = user_posting_form(request, db, form)
    access = authorize(db, user=user, project_id=project_id, action=Action.LABEL)
    try:
        item_id = int(str(form.get("item_id")))
    except ValueError:
        raise BadRequest("Which item? The form lacks its id.") from None
    service.skip_item(db, project=access.project, user=user, item_id=item_id, then_next=True)
    task = service.next_task(db, project=access.project, user=user)
    if is_htmx(request):
        return _panel(request, access.project, task, notice="Skipped.", db=db)
    return RedirectResponse(f"/projects/{project_id}/label", status_code=303)
