"""Gold items: an admin marks items with their known answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth.deps import DbSession, require_user
from app.consensus import service
from app.core.templating import render
from app.models import User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)


@router.get("/projects/{project_id}/gold")
def gold_page(request: Request, project_id: int, user: User = Depends(require_user),
              db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    return render(request, "consensus/gold.html", {
        "project": access.project, "gold": service.list_gold(db, project=access.project)})


@router.post("/projects/{project_id}/gold")
def set_gold(project_id: int, external_id: str = Form(...), answer: str = Form(""),
             user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    service.set_gold_by_letters(db, project=access.project, external_id=external_id,
                                answer=answer)
    return RedirectResponse(f"/projects/{project_id}/gold", status_code=303)
