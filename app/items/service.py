"""Importing items: validate the whole file, then write all of it or none of it."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import JSON, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import leases
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import Conflict, Unprocessable
from app.core.jobs import enqueue_after_commit
from app.items import history, repository, tags
from app.items.parsing import (
    Limits,
    LineError,
    ParsedItem,
    ParseResult,
    RecordError,
    parse_file,
    parse_records,
    records_of_body,
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


class _CollectorPause:
    """Python's cyclic garbage collector, off while any import is building its objects.

    Parsing and validating 10,000 items makes hundreds of thousands of dicts, lists and
    strings, and every collection walks all of them again: that was nearly half of the web
    process's CPU in an import. They hold no reference cycles, so reference counting frees
    them when the import ends; the collector comes back on when the last import is done
    (unless something else had turned it off). Imports that overlap without a break (a
    client sending batches two at a time) collect once every MAX_PAUSE_S, so the cyclic
    garbage of other requests waits that long at most.
    """

    MAX_PAUSE_S = 10.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.restore = False
        self.since = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            now = time.monotonic()
            overdue = self.holders > 0 and self.restore and now - self.since > self.MAX_PAUSE_S
            if self.holders == 0:
                self.restore = gc.isenabled()
                gc.disable()
            if self.holders == 0 or overdue:
                self.since = now
            self.holders += 1
        if overdue:
            gc.collect()
        try:
            yield
        finally:
            with self.lock:
                self.holders -= 1
                if self.holders == 0 and self.restore:
                    gc.enable()


collector_paused = _CollectorPause()


def import_json(db: Session, *, project: Project, user: User | None,
                body: bytes) -> ImportReport:
    """Import items sent to the API as the body ``{"items": [...]}``, parsed here (off the
    event loop, collector paused); the report numbers the records from 1 as 'line'."""
    with collector_paused():
        try:
            records = records_of_body(body)
        except RecordError as exc:
            raise Unprocessable(f"Nothing was imported: {exc}.") from None
        report = import_records(db, project=project, user=user, records=records)
        del records  # freed while the collector is off, or it would walk them all once more
    return report


def import_records(db: Session, *, project: Project, user: User | None,
                   records: list) -> ImportReport:
    """Import items given as JSON records. Large batches go to a Celery job too."""
    parsed = parse_records(records, limits=limits())
    if parsed.ok and len(parsed.items) > get_settings().import_sync_limit:
        data = b"\n".join(repository.json_bytes(r) for r in records)
        return import_file(db, project=project, user=user, data=data, filename="api.jsonl",
                           file_format="jsonl")
    return _import_parsed(db, project=project, parsed=parsed)


def import_file(db: Session, *, project: Project, user: User | None, data: bytes,
                filename: str, file_format: str) -> ImportReport:
    """Import a file. Small files are written now; large ones go to a Celery job."""
    with collector_paused():
        return _import_file(db, project=project, user=user, data=data, filename=filename,
                            file_format=file_format)


def _import_file(db: Session, *, project: Project, user: User | None, data: bytes,
                 filename: str, file_format: str) -> ImportReport:
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
    """Fresh statistics keep the queue's "next item" query on its index after a bulk load.

    Only when the load is large beside what the statistics know (a tenth or more, as
    autovacuum's own threshold): a batch of 20k into a table of a million leaves the plans
    as they were, and an ANALYZE after every batch of a bulk load was a tenth of its
    database time. The columns that queries filter and sort on are enough; the JSON ones
    are the costly part (autovacuum's ANALYZE, where it runs, covers them).
    """
    if written < ANALYZE_AFTER or db.get_bind().dialect.name != "postgresql":
        return
    known = db.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass"))
    if known is None or known < 0 or written * 10 >= known:  # -1: never analysed
        db.execute(text(f"ANALYZE items ({_ANALYZED})"))


# Every column of items but the JSON ones (prompt, metadata, gold).
_ANALYZED = ", ".join(f'"{c.name}"' for c in Item.__table__.columns
                      if not isinstance(c.type, JSON))


def task_type(db: Session, project_id: int) -> str:
    project = db.get(Project, project_id)
    return project.task_type if project else "pairwise"


def _write_items(db: Session, *, project_id: int, items: list[ParsedItem],
                 job_id: int | None) -> None:
    """Insert items, their responses and their tags. Items written for a background job
    stay invisible (``ready`` false) until the job publishes them all at once.

    The item ids are drawn first, so items and responses each go in as one bulk insert
    (binary COPY on PostgreSQL) with no id to read back per row.
    """
    if not items:
        return
    ids = repository.allocate_item_ids(db, count=len(items))
    now = utcnow()
    try:
        repository.insert_rows(
            db, table=Item.__table__, columns=["id", "external_id", "prompt", "metadata"],
            rows=[(item_id, i.external_id, i.prompt, i.metadata)
                  for item_id, i in zip(ids, items, strict=True)],
            same={"project_id": project_id, "import_job_id": job_id,
                  "ready": job_id is None, "created_at": now})
        repository.insert_rows(
            db, table=Response.__table__,
            columns=["item_id", "position", "text", "model_name", "source"],
            rows=[(item_id, pos, r.text, r.model, r.source or ResponseSource.IMPORTED.value)
                  for item_id, parsed in zip(ids, items, strict=True)
                  for pos, r in enumerate(parsed.responses)],
            same={"created_at": now})
        tags.write_item_tags(db, project_id=project_id, items=(
            (item_id, i.metadata) for item_id, i in zip(ids, items, strict=True)))
    except IntegrityError as exc:
        raise Conflict("Another import added some of these items at the same moment; "
                       "run this import again (it will skip what is there).") from exc
    with_history = [(i, p) for i, p in zip(ids, items, strict=True)
                    if p.history is not None or p.gold is not None]
    for start in range(0, len(with_history), BATCH):
        history.restore(db, project_id=project_id, task_type=task_type(db, project_id),
                        items=with_history[start : start + BATCH])


def run_import_job(*, job_id: int) -> bool:
    """Body of the ``items.run_import`` task: idempotent, safe to run again after a crash.

    A copy claims the job with an owner token (app.core.leases); a redelivered copy takes
    over only from one that has not reported for ``job_claim_stale_s``, and starts again
    from nothing. Until then it returns False and the task looks again later.
    """
    with collector_paused():
        return _run_import_job(job_id)


def _run_import_job(job_id: int) -> bool:
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
