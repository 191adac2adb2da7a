"""Import pages: upload a file (with an upload progress bar) and watch a large import job."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.auth.deps import DbSession, require_user
from app.core.config import get_settings
from app.core.errors import BadRequest, NotFound
from app.core.templating import render
from app.items import repository, service
from app.items.parsing import RecordError, detect_format
from app.models import User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)


async def read_upload(upload: UploadFile) -> bytes:
    """The uploaded file. Its size was checked as it arrived (app.core.limits refuses a body
    over max_upload_bytes before reading it whole), and it was spooled to disk, not memory."""
    return await upload.read()


def file_format_of(filename: str, declared: str | None) -> str:
    try:
        return detect_format(filename, declared or None)
    except RecordError as exc:
        raise BadRequest(str(exc)) from None


@router.get("/projects/{project_id}/import")
def import_page(request: Request, project_id: int, user: User = Depends(require_user),
                db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.IMPORT)
    jobs = repository.list_import_jobs(db, project_id=project_id)
    return render(request, "items/import.html", {
        "project": access.project,
        "jobs": [service.job_progress(db, job=j) for j in jobs],
        "sync_limit": get_settings().import_sync_limit,
    })


@router.post("/projects/{project_id}/import")
async def upload(request: Request, project_id: int, file: UploadFile = File(...),
                 file_format: str = Form(""), user: User = Depends(require_user),
                 db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.IMPORT)
    data = await read_upload(file)
    fmt = file_format_of(file.filename or "upload", file_format)
    report = service.import_file(db, project=access.project, user=user, data=data,
                                 filename=file.filename or "upload", file_format=fmt)
    if report.job_id is not None:
        db.flush()
        job = repository.get_import_job(db, job_id=report.job_id)
        assert job is not None
        return render(request, "items/_job.html", {
            "project": access.project, "p": service.job_progress(db, job=job)})
    return render(request, "items/_report.html", {"report": report, "project": access.project},
                  status_code=200 if report.ok else 422)


@router.get("/projects/{project_id}/import-jobs/{job_id}")
def job_status(request: Request, project_id: int, job_id: int,
               user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.IMPORT)
    job = repository.get_import_job(db, job_id=job_id)
    if job is None or job.project_id != project_id:
        raise NotFound("No such import job.")
    return render(request, "items/_job.html", {
        "project": access.project, "p": service.job_progress(db, job=job)})
