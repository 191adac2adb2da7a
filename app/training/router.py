"""Training pages: start a run on a snapshot, watch its curves and logs, cancel, restart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.analytics import charts
from app.auth.deps import DbSession, FormBody, require_user
from app.core.errors import BadRequest
from app.core.templating import is_htmx, render
from app.exports.formats import PREFERENCE_FORMATS
from app.exports.snapshots import list_snapshots
from app.generation.service import list_generations, rounds
from app.models import User
from app.models.exports import SnapshotStatus
from app.projects.policies import Action, authorize
from app.training import repository, service
from app.training.schemas import TrainingRunIn

router = APIRouter(include_in_schema=False)

NUMBERS = {"learning_rate": float, "num_train_epochs": float, "max_steps": int,
           "per_device_train_batch_size": int, "gradient_accumulation_steps": int,
           "max_length": int, "beta": float}


def run_in_from_form(form: FormData) -> TrainingRunIn:
    hyper: dict[str, Any] = {}
    try:
        for key, kind in NUMBERS.items():
            value = str(form.get(key) or "").strip()
            if value:
                hyper[key] = kind(value)
        if form.get("lora") == "on":
            hyper["lora"] = {"r": int(str(form.get("lora_r") or 16))}
        return TrainingRunIn(snapshot_id=int(str(form.get("snapshot_id") or 0)),
                             method=str(form.get("method") or "dpo"),
                             base_model=str(form.get("base_model") or "smollm2"),
                             hyperparameters=hyper)
    except (ValueError, ValidationError) as exc:
        raise BadRequest(f"Check the form: {exc}") from None


@router.get("/projects/{project_id}/training")
def training_page(request: Request, project_id: int, snapshot: int | None = None,
                  user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    service.expire_silent_runs(db)
    snapshots = [s for s in list_snapshots(db, project_id=project_id)
                 if s.status == SnapshotStatus.SUCCEEDED and s.format in PREFERENCE_FORMATS]
    return render(request, "training/page.html", {
        "project": access.project, "snapshots": snapshots, "chosen": snapshot,
        "runs": [service.run_view(db, run=r) for r in
                 repository.list_runs(db, project_id=project_id)],
        "checkpoints": repository.checkpoints(db, project_id=project_id),
        "rounds": rounds(db, project_id=project_id),
        "generations": list_generations(db, project_id=project_id)})


@router.post("/projects/{project_id}/training")
def start(project_id: int, form: FormData = FormBody, user: User = Depends(require_user),
          db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    run = service.start_run(db, project=access.project, user=user, data=run_in_from_form(form))
    return RedirectResponse(f"/projects/{project_id}/training/{run.id}", status_code=303)


def _curves(view: service.RunView) -> dict[str, Any]:
    steps = [str(m.step) for m in view.metrics]
    def series(*keys: str) -> dict[str, list[float | None]]:
        return {k: [m.values.get(k) for m in view.metrics] for k in keys
                if any(m.values.get(k) is not None for m in view.metrics)}
    return {
        "loss": charts.line_chart(steps, series("loss", "eval_loss"), title="Loss"),
        "accuracy": charts.line_chart(
            steps, {k: [None if v is None else 100 * v for v in vs] for k, vs in series(
                "rewards/accuracies", "accuracy", "eval_accuracy").items()},
            title="Reward accuracy", y_max=100, unit="%"),
        "margins": charts.line_chart(steps, series("rewards/margins", "margin"),
                                     title="Reward margin"),
    }


@router.get("/projects/{project_id}/training/{run_id}")
def run_page(request: Request, project_id: int, run_id: int,
             user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    service.expire_silent_runs(db)
    view = service.run_view(db, run=service.get_run(db, project_id=project_id, run_id=run_id))
    template = "training/_run.html" if is_htmx(request) else "training/run.html"
    return render(request, template, {"project": access.project, "v": view,
                                      "curves": _curves(view)})


@router.post("/projects/{project_id}/training/{run_id}/{action}")
def act(project_id: int, run_id: int, action: str, user: User = Depends(require_user),
        db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.MANAGE)
    if action == "cancel":
        service.cancel_run(db, project=access.project, run_id=run_id)
    elif action == "restart":
        service.restart_run(db, project=access.project, user=user, run_id=run_id)
    else:
        raise BadRequest("A run can be cancelled or restarted.")
    return RedirectResponse(f"/projects/{project_id}/training/{run_id}", status_code=303)
