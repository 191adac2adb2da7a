"""Importing items: validate the whole file, then write all of it or none of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import leases
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import Conflict
from app.core.jobs import enqueue_after_commit
from app.items import history, repository
from app.items.parsing import (
    Limits,
    LineError,
    ParsedItem,
    ParseResult,
    parse_file,
    parse_records,
)
from app.models import ImportJob, Item, Project, Response, User
from app.models.items import JobStatus, ResponseSource
from app.models.types import utcnow

BATCH = 1000
ANALYZE_AFTER = 1000


@dataclass
class ImportReport:
    """What an import did, or why it did nothing."""

    lines: int = 0
    created: int = 0
    unchanged: int = 0
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    job_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "created": self.created,
            "unchanged": self.unchanged,
            "error_count": self.error_count,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
            "job_id": self.job_id,
        }


def limits() -> Limits:
    s = get_settings()
    return Limits(max_line_bytes=s.max_line_bytes, max_responses=s.max_responses,
                  max_response_chars=s.max_response_chars)


def import_records(db: Session, *, project: Project, user: User | None,
                   records: list) -> ImportReport:
    """Import items sent as JSON (the API). Large batches go to a Celery job too."""
    parsed = parse_records(records, limits=limits())
    if parsed.ok and len(parsed.items) > get_settings().import_sync_limit:
        data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
        return import_file(db, project=project, user=user, data=data, filename="api.jsonl",
                           file_format="jsonl")
    return _import_parsed(db, project=project, parsed=parsed)


def import_file(db: Session, *, project: Project, user: User | None, data: bytes,
                filename: str, file_format: str) -> ImportReport:
    """Import a file. Small files are written now; large ones go to a Celery job."""
    parsed = parse_file(data, file_format=file_format, limits=limits())
    if parsed.ok and len(parsed.items) > get_settings().import_sync_limit:
        job = ImportJob(project_id=project.id, created_by_id=user.id if user else None,
                        filename=filename[:300], file_format=file_format, content=data,
                        total=len(parsed.items))
        db.add(job)
        db.flush()
        enqueue_after_commit(db, "items.run_import", job.id)
        return ImportReport(lines=parsed.lines, job_id=job.id)
    return _import_parsed(db, project=project, parsed=parsed)


def _import_parsed(db: Session, *, project: Project, parsed: ParseResult) -> ImportReport:
    report = ImportReport(lines=parsed.lines, errors=parsed.errors,
                          error_count=parsed.error_count)
    if not parsed.ok:
        return report
    report.created, report.unchanged = insert_items(db, project_id=project.id,
                                                    items=parsed.items)
    return report


def new_items(db: Session, *, project_id: int, items: list[ParsedItem]) -> list[ParsedItem]:
    """The items whose external id the project does not have yet."""
    existing = repository.existing_external_ids(
        db, project_id=project_id, external_ids=[i.external_id for i in items]
    )
    return [i for i in items if i.external_id not in existing]


def insert_items(db: Session, *, project_id: int, items: list[ParsedItem]) -> tuple[int, int]:
    """Insert the items whose external id is new, visible at once; (created, unchanged)."""
    new = new_items(db, project_id=project_id, items=items)
    _write_items(db, project_id=project_id, items=new, job_id=None)
    refresh_statistics(db, written=len(new))
    return len(new), len(items) - len(new)


def refresh_statistics(db: Session, *, written: int) -> None:
    """Fresh statistics keep the queue's "next item" query on its index after a bulk load."""
    if written >= ANALYZE_AFTER and db.get_bind().dialect.name == "postgresql":
        db.execute(text("ANALYZE items"))


def task_type(db: Session, project_id: int) -> str:
    project = db.get(Project, project_id)
    return project.task_type if project else "pairwise"


def _write_items(db: Session, *, project_id: int, items: list[ParsedItem],
                 job_id: int | None) -> None:
    """Insert items and their responses. Items written for a background job stay invisible
    (``ready`` false) until the job publishes them all at once."""
    now = utcnow()
    try:
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            ids = db.scalars(
                insert(Item).returning(Item.id, sort_by_parameter_order=True),
                [
                    {"project_id": project_id, "external_id": i.external_id, "prompt": i.prompt,
                     "meta": i.metadata, "import_job_id": job_id, "ready": job_id is None,
                     "created_at": now}
                    for i in batch
                ],
            ).all()
            db.execute(
                insert(Response),
                [
                    {"item_id": item_id, "position": pos, "text": r.text, "model_name": r.model,
                     "source": r.source or ResponseSource.IMPORTED, "created_at": now}
                    for item_id, parsed in zip(ids, batch, strict=True)
                    for pos, r in enumerate(parsed.responses)
                ],
            )
            history.restore(db, project_id=project_id, task_type=task_type(db, project_id),
                            items=list(zip(ids, batch, strict=True)))
    except IntegrityError as exc:
        raise Conflict("Another import added some of these items at the same moment; "
                       "run this import again (it will skip what is there).") from exc


def run_import_job(*, job_id: int) -> bool:
    """Body of the ``items.run_import`` task: idempotent, safe to run again after a crash.

    A copy claims the job with an owner token (app.core.leases); a redelivered copy takes
    over only from one that has not reported for ``job_claim_stale_s``, and starts again
    from nothing. Until then it returns False and the task looks again later.
    """
    owner = leases.new_owner()
    with session_scope(write=True) as db:
        if not leases.claim(db, ImportJob, job_id, owner):
            return not leases.held_elsewhere(db, ImportJob, job_id)
        leases.hold(db, ImportJob, job_id, owner, phase="validating")
        job = repository.get_import_job(db, job_id=job_id)
        assert job is not None
        # A run killed halfway left invisible items behind: start again from nothing.
        repository.delete_unfinished_job_items(db, job_id=job_id)
        data, file_format, project_id = job.content or b"", job.file_format, job.project_id

    parsed = parse_file(data, file_format=file_format, limits=limits())
    try:
        if not parsed.ok:
            report = ImportReport(lines=parsed.lines, errors=parsed.errors,
                                  error_count=parsed.error_count)
            with session_scope(write=True) as db:
                _finish(db, job_id, owner, status=JobStatus.FAILED, report=report,
                        error=f"{parsed.error_count} bad lines; nothing was imported")
            return True
        with session_scope() as db:
            todo = new_items(db, project_id=project_id, items=parsed.items)
        created, unchanged = len(todo), len(parsed.items) - len(todo)
        with session_scope(write=True) as db:
            leases.hold(db, ImportJob, job_id, owner, phase="importing", total=len(todo))
        for start in range(0, len(todo), BATCH):
            # Each batch commits, so the page can count the rows as they land; the owner
            # check holds the job's row lock, so a copy that took over cannot interleave.
            with session_scope(write=True) as db:
                leases.hold(db, ImportJob, job_id, owner)
                _write_items(db, project_id=project_id, items=todo[start : start + BATCH],
                             job_id=job_id)
        with session_scope(write=True) as db:
            leases.hold(db, ImportJob, job_id, owner)
            repository.publish_job_items(db, job_id=job_id)
            refresh_statistics(db, written=created)
            _finish(db, job_id, owner, status=JobStatus.SUCCEEDED,
                    report=ImportReport(lines=parsed.lines, created=created,
                                        unchanged=unchanged, job_id=job_id))
    except leases.Superseded:
        return True  # the copy that took over finishes it
    except Exception as exc:
        with session_scope(write=True) as db:
            if _finish(db, job_id, owner, status=JobStatus.FAILED, report=None,
                       error=f"import failed: {type(exc).__name__}: {exc}"[:2000]):
                repository.delete_unfinished_job_items(db, job_id=job_id)
        raise
    return True


def _finish(db: Session, job_id: int, owner: str, *, status: str,
            report: ImportReport | None, error: str | None = None) -> bool:
    """End the job, if this copy still owns it; the stored file is dropped."""
    return leases.still_ours(db, ImportJob, job_id, owner, status=status, phase="done",
                             finished_at=utcnow(), content=None,
                             report=report.as_dict() if report else None, error=error,
                             done=report.created if report else 0)


@dataclass(frozen=True)
class JobProgress:
    job: ImportJob
    written: int

    @property
    def percent(self) -> int:
        if self.job.status == JobStatus.SUCCEEDED:
            return 100
        if not self.job.total:
            return 0
        return min(99, round(100 * self.written / self.job.total))


def job_progress(db: Session, *, job: ImportJob) -> JobProgress:
    """Progress counted from the rows the job has written, not from a counter."""
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return JobProgress(job=job, written=job.done)
    return JobProgress(job=job, written=repository.count_job_items(db, job_id=job.id))
