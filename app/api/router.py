"""The JSON API (/api/v1): bearer tokens scoped to a project and verbs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.auth.deps import ApiPrincipal, DbSession, api_principal
from app.core.errors import Forbidden, NotFound
from app.exports import snapshots
from app.exports.formats import ExportFormat
from app.exports.router import file_response, snapshot_json, stream_export
from app.exports.schemas import SnapshotIn
from app.items import listing
from app.items import repository as items_repo
from app.items import service as items
from app.items.list_schemas import parse_query
from app.items.router import file_format_of, read_upload
from app.labeling.service import project_progress
from app.projects import repository
from app.projects.policies import Action, authorize
from app.training.service import worker_may_download

router = APIRouter(prefix="/api/v1", tags=["api"])


class ItemsIn(BaseModel):
    items: list[Any] = Field(
        description="Items as in a JSONL import: prompt, responses, external_id, metadata")


async def raw_body(request: Request) -> bytes:
    """The body as sent: an import of 10k items parses it in the service, off the event loop
    (app.items.service.import_json), instead of FastAPI parsing and validating it first."""
    return await request.body()


def _project_json(project, progress=None) -> dict[str, Any]:  # noqa: ANN001
    out = {"id": project.id, "name": project.name, "task_type": project.task_type,
           "overlap_k": project.overlap_k, "lease_minutes": project.lease_minutes}
    if progress is not None:
        out["progress"] = {"total": progress.total, "done": progress.done,
                           "in_progress": progress.in_progress, "todo": progress.todo}
    return out


def _import_response(report: items.ImportReport) -> JSONResponse:
    status = 202 if report.job_id is not None else (200 if report.ok else 422)
    return JSONResponse(report.as_dict(), status_code=status)


@router.get("/projects")
def api_list_projects(p: ApiPrincipal = Depends(api_principal),
                      db: Session = DbSession) -> list[dict[str, Any]]:
    projects = repository.list_projects_for(db, user=p.user)
    if p.token is not None:
        projects = [(proj, role) for proj, role in projects if proj.id == p.token.project_id]
    return [dict(_project_json(proj), role=role) for proj, role in projects]


@router.get("/projects/{project_id}")
def api_get_project(project_id: int, p: ApiPrincipal = Depends(api_principal),
                    db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="read")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.VIEW)
    progress = (project_progress(db, project=access.project)
                if access.can(Action.SEE_PROGRESS) else None)
    return _project_json(access.project, progress)


@router.get("/projects/{project_id}/items")
def api_list_items(project_id: int, status: str = "", prefix: str = "", round: str = "",  # noqa: A002
                   tag: str = "", source: str = "", cursor: str = "", limit: str = "",
                   p: ApiPrincipal = Depends(api_principal),
                   db: Session = DbSession) -> dict[str, Any]:
    """The project's items in id order, ``limit`` (default 50, at most 200) at a time; pass
    ``next_cursor`` back as ``cursor`` for the next page. Filters: ``status`` (todo,
    in_progress, done, conflict, gold), ``prefix`` (of the external id), ``round``, ``tag``,
    ``source`` (of the consensus), in any combination. A page holds fewer than ``limit``
    items only at an end of the list."""
    p.check(project_id=project_id, scope="read")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.SEE_PROGRESS)
    page = listing.list_items(db, project=access.project, query=parse_query(
        status=status, prefix=prefix, round=round, tag=tag, source=source, cursor=cursor,
        limit=limit))
    return {"items": [r.as_json() for r in page.rows],
            "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
            "prev_cursor": page.prev_cursor.encode() if page.prev_cursor else None}


@router.post("/projects/{project_id}/items", openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": ItemsIn.model_json_schema()}}}})
def api_import_items(project_id: int, body: bytes = Depends(raw_body),
                     p: ApiPrincipal = Depends(api_principal),
                     db: Session = DbSession) -> JSONResponse:
    """Import items given as JSON ``{"items": [...]}``; the report numbers them from 1 as
    'line'."""
    p.check(project_id=project_id, scope="import")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.IMPORT)
    report = items.import_json(db, project=access.project, user=p.user, body=body)
    return _import_response(report)


@router.post("/projects/{project_id}/imports")
async def api_import_file(project_id: int, file: UploadFile = File(...),
                          file_format: str = Form(""), p: ApiPrincipal = Depends(api_principal),
                          db: Session = DbSession) -> JSONResponse:
    """Import a JSONL or CSV file; large files answer 202 with a job to poll."""
    p.check(project_id=project_id, scope="import")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.IMPORT)
    data = await read_upload(file)
    fmt = file_format_of(file.filename or "upload", file_format)
    report = items.import_file(db, project=access.project, user=p.user, data=data,
                               filename=file.filename or "upload", file_format=fmt)
    return _import_response(report)


@router.get("/projects/{project_id}/imports/{job_id}")
def api_import_job(project_id: int, job_id: int, p: ApiPrincipal = Depends(api_principal),
                   db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="import")
    authorize(db, user=p.user, project_id=project_id, action=Action.IMPORT)
    job = items_repo.get_import_job(db, job_id=job_id)
    if job is None or job.project_id != project_id:
        raise NotFound("No such import job.")
    progress = items.job_progress(db, job=job)
    return {"id": job.id, "status": job.status, "phase": job.phase, "total": job.total,
            "written": progress.written, "percent": progress.percent, "report": job.report,
            "error": job.error}


@router.get("/projects/{project_id}/export")
def api_export(project_id: int, format: ExportFormat = ExportFormat.STANDARD,  # noqa: A002
               source: str = "all", margin: bool = False,
               p: ApiPrincipal = Depends(api_principal),
               db: Session = DbSession) -> Response:
    """Stream the project's decided preferences as JSONL (TRL's formats, KTO, SFT, OpenAI);
    ``source`` is ``all`` or a comma list of human, ai_accepted, ai_reviewed, adjudicated,
    gold. For a frozen, versioned file with a manifest, make a snapshot."""
    p.check(project_id=project_id, scope="export")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.EXPORT)
    return stream_export(access.project, format, source, margin)


@router.post("/projects/{project_id}/snapshots", status_code=202)
def api_create_snapshot(project_id: int, spec: SnapshotIn,
                        p: ApiPrincipal = Depends(api_principal),
                        db: Session = DbSession) -> dict[str, Any]:
    """Queue an export snapshot; poll it until ``status`` is succeeded, then fetch its files."""
    p.check(project_id=project_id, scope="export")
    access = authorize(db, user=p.user, project_id=project_id, action=Action.EXPORT)
    return snapshot_json(snapshots.create_snapshot(db, project=access.project, user=p.user,
                                                   spec=spec))


@router.get("/projects/{project_id}/snapshots")
def api_list_snapshots(project_id: int, p: ApiPrincipal = Depends(api_principal),
                       db: Session = DbSession) -> list[dict[str, Any]]:
    p.check(project_id=project_id, scope="export")
    authorize(db, user=p.user, project_id=project_id, action=Action.EXPORT)
    return [snapshot_json(s) for s in snapshots.list_snapshots(db, project_id=project_id)]


@router.get("/projects/{project_id}/snapshots/{snapshot_id}")
def api_get_snapshot(project_id: int, snapshot_id: int,
                     p: ApiPrincipal = Depends(api_principal),
                     db: Session = DbSession) -> dict[str, Any]:
    p.check(project_id=project_id, scope="export")
    authorize(db, user=p.user, project_id=project_id, action=Action.EXPORT)
    return snapshot_json(snapshots.get_snapshot(db, project_id=project_id,
                                                snapshot_id=snapshot_id))


@router.get("/projects/{project_id}/snapshots/{snapshot_id}/files/{name}")
def api_snapshot_file(project_id: int, snapshot_id: int, name: str,
                      p: ApiPrincipal = Depends(api_principal),
                      db: Session = DbSession) -> Response:
    """A snapshot's file: for a token with the export scope, or for the training worker of
    a run on this snapshot (its own per-run token)."""
    if p.token is not None and "worker" in p.token.scopes:
        p.check(project_id=project_id, scope="worker")
        if not worker_may_download(db, token_id=p.token.id, snapshot_id=snapshot_id):
            raise Forbidden("This worker token is for another snapshot or a finished run.")
    else:
        p.check(project_id=project_id, scope="export")
        authorize(db, user=p.user, project_id=project_id, action=Action.EXPORT)
    return file_response(db, project_id=project_id, snapshot_id=snapshot_id, name=name)


@router.get("/projects/{project_id}/snapshots/{newer_id}/compare/{older_id}")
def api_compare_snapshots(project_id: int, newer_id: int, older_id: int,
                          p: ApiPrincipal = Depends(api_principal),
                          db: Session = DbSession) -> dict[str, Any]:
    """Rows added and removed between two snapshots, with a sample of each."""
    p.check(project_id=project_id, scope="export")
    authorize(db, user=p.user, project_id=project_id, action=Action.EXPORT)
    c = snapshots.compare(db, project_id=project_id, older_id=older_id, newer_id=newer_id)
    return {"older": c.older.id, "newer": c.newer.id, "added": c.added, "removed": c.removed,
            "unchanged": c.unchanged, "added_sample": c.added_rows,
            "removed_sample": c.removed_rows}
