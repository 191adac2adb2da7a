"""Import pages (upload a file, watch a large import job) and the project's item list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.auth.deps import DbSession, require_user
from app.core.config import get_settings
from app.core.errors import BadRequest, NotFound
from app.core.templating import render
from app.items import listing, repository, service
from app.items.list_schemas import ItemStatus, parse_query
from app.items.parsing import RecordError, detect_format
from app.models import User
from app.models.consensus import ConsensusSource
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


@router.get("/projects/{project_id}/items")
def item_list(request: Request, project_id: int, status: str = "", prefix: str = "",
              round: str = "", tag: str = "", source: str = "", cursor: str = "",  # noqa: A002
              limit: str = "", user: User = Depends(require_user),
              db: Session = DbSession) -> Response:
    """The items, a page at a time (keyset cursor), filtered; htmx gets just the table."""
    access = authorize(db, user=user, project_id=project_id, action=Action.SEE_PROGRESS)
    query = parse_query(status=status, prefix=prefix, round=round, tag=tag, source=source,
                        cursor=cursor, limit=limit)
    page = listing.list_items(db, project=access.project, query=query)
    context = {"project": access.project, "query": query, "page": page,
               "statuses": list(ItemStatus), "sources": list(ConsensusSource)}
    # The page links swap the table only; a history restore asks for the whole page.
    if request.headers.get("HX-Target") == "item-table":
        return render(request, "items/_table.html", context)
    return render(request, "items/list.html", context)


@router.get("/projects/{project_id}/items-count")
def item_count(request: Request, project_id: int, status: str = "", prefix: str = "",
               round: str = "", tag: str = "", source: str = "",  # noqa: A002
               user: User = Depends(require_user), db: Session = DbSession) -> Response:
    """How many items match, loaded after the list so the list never waits for a count."""
    access = authorize(db, user=user, project_id=project_id, action=Action.SEE_PROGRESS)
    query = parse_query(status=status, prefix=prefix, round=round, tag=tag, source=source)
    return render(request, "items/_count.html", {
        "total": listing.count_matching(db, project=access.project, query=query)})


@router.get("/projects/{project_id}/items/{item_id}")
def item_page(request: Request, project_id: int, item_id: int,
              user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.SEE_PROGRESS)
    return render(request, "items/item.html", {
        "project": access.project,
        "d": listing.item_detail(db, project=access.project, item_id=item_id)})
