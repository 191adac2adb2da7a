"""Export pages: snapshots (make, watch, download, compare) and the quick JSONL stream."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.deps import DbSession, FormBody, require_user
from app.consensus.service import refresh_for_page
from app.core.errors import BadRequest
from app.core.templating import is_htmx, render
from app.exports import snapshots
from app.exports.filters import ALL_SOURCES, ExportFilters, LabelSource, parse_sources
from app.exports.formats import DESCRIPTIONS, PREFERENCE_FORMATS, Container, ExportFormat
from app.exports.schemas import SnapshotIn, SplitIn
from app.exports.service import export_stats, iter_jsonl
from app.models import ExportSnapshot, Project, User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)


def sources_of(source: str) -> frozenset[LabelSource]:
    try:
        return parse_sources(source)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def stream_export(project: Project, fmt: ExportFormat, source: str = "all",
                  margin: bool = False) -> StreamingResponse:
    sources = sources_of(source)
    if fmt == ExportFormat.TANDEM:
        raise BadRequest("The full-fidelity format is made as a snapshot.")
    suffix = "" if sources == ALL_SOURCES else "-" + "+".join(sorted(sources))
    filename = f"tandem-project-{project.id}-{fmt.value}{suffix}.jsonl"
    return StreamingResponse(
        iter_jsonl(project_id=project.id, fmt=fmt, sources=sources, margin=margin),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def spec_from_form(form: dict[str, str], sources: list[str]) -> SnapshotIn:
    """The snapshot form -> a SnapshotIn; a bad value is a 400 naming the field."""
    def number(name: str) -> float | None:
        value = (form.get(name) or "").strip()
        return float(value) if value else None

    def date(name: str) -> datetime | None:
        value = (form.get(name) or "").strip()
        return datetime.fromisoformat(value) if value else None

    try:
        test_fraction = number("test_fraction")
        version = number("rule_set_version")
        return SnapshotIn(
            format=form.get("format") or "standard", container=form.get("container") or "jsonl",
            margin=form.get("margin") == "on",
            filters=ExportFilters(sources=sources or sorted(ALL_SOURCES),
                                  min_agreement=number("min_agreement"),
                                  min_confidence=number("min_confidence"),
                                  rule_set_version=int(version) if version else None,
                                  since=date("since"), until=date("until"),
                                  tag=form.get("tag") or None,
                                  round=int(number("round")) if number("round") else None),
            split=SplitIn(test_fraction=test_fraction, seed=int(number("seed") or 0))
            if test_fraction else None)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}") from None
    except ValueError as exc:
        raise BadRequest(f"Check the numbers and dates: {exc}") from None


def _page(request: Request, db: Session, project: Project, *, status_code: int = 200,
          error: str | None = None) -> Response:
    return render(request, "exports/page.html", {
        "project": project, "stats": export_stats(db, project_id=project.id),
        "formats": list(ExportFormat), "descriptions": DESCRIPTIONS,
        "preference_formats": PREFERENCE_FORMATS, "containers": list(Container),
        "sources": list(LabelSource),
        "snapshots": snapshots.list_snapshots(db, project_id=project.id), "error": error,
    }, status_code=status_code)


@router.get("/projects/{project_id}/export")
def export_page(request: Request, project_id: int, user: User = Depends(require_user),
                db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    refresh_for_page(db, project_id=project_id)
    return _page(request, db, access.project)


@router.post("/projects/{project_id}/snapshots")
def create_snapshot(project_id: int, form: FormData = FormBody,
                    user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    spec = spec_from_form({k: str(v) for k, v in form.items()},
                          [str(v) for v in form.getlist("sources")])
    snapshot = snapshots.create_snapshot(db, project=access.project, user=user, spec=spec)
    return RedirectResponse(f"/projects/{project_id}/export#snapshot-{snapshot.id}",
                            status_code=303)


@router.get("/projects/{project_id}/snapshots/{snapshot_id}")
def snapshot_partial(request: Request, project_id: int, snapshot_id: int,
                     user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    snapshot = snapshots.get_snapshot(db, project_id=project_id, snapshot_id=snapshot_id)
    template = "exports/_snapshot.html" if is_htmx(request) else "exports/snapshot.html"
    return render(request, template, {"project": access.project, "s": snapshot})


@router.get("/projects/{project_id}/snapshots/{snapshot_id}/files/{name}")
def snapshot_download(project_id: int, snapshot_id: int, name: str,
                      user: User = Depends(require_user), db: Session = DbSession) -> Response:
    authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    return file_response(db, project_id=project_id, snapshot_id=snapshot_id, name=name)


def file_response(db: Session, *, project_id: int, snapshot_id: int, name: str) -> Response:
    snapshot = snapshots.get_snapshot(db, project_id=project_id, snapshot_id=snapshot_id)
    path = snapshots.snapshot_file(snapshot, name)
    media = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet",
             "json": "application/json", "md": "text/markdown; charset=utf-8"}
    kind = media.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return FileResponse(path, media_type=kind,
                        filename=f"snapshot-{snapshot.id}-v{snapshot.version}-{name}")


@router.get("/projects/{project_id}/snapshots-compare")
def compare_page(request: Request, project_id: int, older: int, newer: int,
                 user: User = Depends(require_user), db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    result = snapshots.compare(db, project_id=project_id, older_id=older, newer_id=newer)
    return render(request, "exports/compare.html", {"project": access.project, "c": result})


@router.get("/projects/{project_id}/export.jsonl")
def download(project_id: int, format: ExportFormat = ExportFormat.STANDARD,  # noqa: A002
             source: str = "all", margin: bool = False, user: User = Depends(require_user),
             db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.EXPORT)
    return stream_export(access.project, format, source, margin)


def snapshot_json(s: ExportSnapshot) -> dict:
    """A snapshot as the API shows it."""
    return {"id": s.id, "project_id": s.project_id, "name": s.name, "version": s.version,
            "lineage": s.lineage, "format": s.format, "container": s.container,
            "filters": s.filters, "split": s.split, "status": s.status,
            "progress": {"done": s.done, "total": s.total}, "rows": s.rows,
            "sha256": s.sha256, "manifest": s.manifest, "error": s.error,
            "created_at": s.created_at.isoformat(),
            "files": [f["name"] for f in (s.manifest or {}).get("files", [])]
            + (["manifest.json", "README.md"] if s.manifest else [])}
