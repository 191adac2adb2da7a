"""Export page and download (session auth); the API serves the same stream by token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from app.auth.deps import DbSession, require_user
from app.core.errors import BadRequest
from app.core.templating import render
from app.exports.formats import ALL_SOURCES, ExportFormat, LabelSource, parse_sources
from app.exports.service import export_stats, iter_jsonl
from app.models import Project, User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)


def sources_of(source: str) -> frozenset[LabelSource]:
    try:
        return parse_sources(source)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def stream_export(project: Project, fmt: ExportFormat, source: str = "all") -> StreamingResponse:
    sources = sources_of(source)
    suffix = "" if sources == ALL_SOURCES else "-" + "+".join(sorted(sources))
    filename = f"tandem-project-{project.id}-{fmt.value}{suffix}.jsonl"
    return StreamingResponse(
        iter_jsonl(project_id=project.id, fmt=fmt, sources=sources),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/projects/{project_id}/export")
def export_page(request: Request, project_id: int, user: User = Depends(require_user),
                db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    return render(request, "exports/page.html", {
        "project": access.project, "stats": export_stats(project_id=project_id),
        "formats": list(ExportFormat), "sources": list(LabelSource),
    })


@router.get("/projects/{project_id}/export.jsonl")
def download(project_id: int, format: ExportFormat = ExportFormat.STANDARD,  # noqa: A002
             source: str = "all", user: User = Depends(require_user),
             db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    return stream_export(access.project, format, source)
