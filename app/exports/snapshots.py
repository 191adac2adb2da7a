"""Export snapshots: built once by a Celery job, then frozen.

A snapshot is a folder of read-only files (the data, split into train/test when asked, a
manifest and a dataset card) written under a temporary name and renamed into place in one
step; its database row records the manifest's sha256. The same choices made again later
give the next version of the same lineage, and two versions can be compared row by row.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.consensus import service as consensus
from app.core import leases
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import BadRequest, NotFound
from app.core.jobs import enqueue_after_commit
from app.exports import pairs, writers
from app.exports import records as records_mod
from app.exports.card import dataset_card
from app.exports.formats import ROWS, Container, ExportFormat
from app.exports.records import Tally
from app.exports.schemas import SnapshotIn, SplitIn
from app.items.chat import prompt_text
from app.models import ExportSnapshot, Project, User
from app.models.exports import SnapshotStatus
from app.models.types import utcnow

FINGERPRINTS = "rows.fingerprints"
log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 1.0  # the export page polls about once a second


def snapshots_root() -> Path:
    return get_settings().data_dir / "exports"


def create_snapshot(db: Session, *, project: Project, user: User | None,
                    spec: SnapshotIn, enqueue: bool = True) -> ExportSnapshot:
    """Queue a new snapshot: the next version of its lineage (``enqueue=False``: the caller
    builds it itself, as the CLI does)."""
    db.execute(select(Project.id).where(Project.id == project.id)
               .with_for_update(key_share=True))
    lineage = spec.lineage()
    last = db.scalar(select(func.max(ExportSnapshot.version)).where(
        ExportSnapshot.project_id == project.id, ExportSnapshot.lineage == lineage)) or 0
    snapshot = ExportSnapshot(
        project_id=project.id, lineage=lineage, version=last + 1, name=spec.title(),
        format=spec.format, container=spec.container,
        filters={**spec.filters.described(), "margin": spec.margin},
        split=spec.split.model_dump() if spec.split else None,
        status=SnapshotStatus.QUEUED, created_by_id=user.id if user else None)
    db.add(snapshot)
    db.flush()
    if enqueue:
        enqueue_after_commit(db, "exports.build_snapshot", snapshot.id)
    return snapshot


def spec_of(snapshot: ExportSnapshot) -> SnapshotIn:
    filters = dict(snapshot.filters)
    margin = bool(filters.pop("margin", True))
    return SnapshotIn(format=snapshot.format, container=snapshot.container, margin=margin,
                      filters=filters, split=snapshot.split)


def list_snapshots(db: Session, *, project_id: int, limit: int = 100) -> list[ExportSnapshot]:
    return list(db.scalars(select(ExportSnapshot).where(ExportSnapshot.project_id == project_id)
                           .order_by(ExportSnapshot.id.desc()).limit(limit)))


def get_snapshot(db: Session, *, project_id: int, snapshot_id: int) -> ExportSnapshot:
    snapshot = db.get(ExportSnapshot, snapshot_id)
    if snapshot is None or snapshot.project_id != project_id:
        raise NotFound("No such snapshot in this project.")
    return snapshot


def snapshot_file(snapshot: ExportSnapshot, name: str) -> Path:
    """A file of a finished snapshot, by the name its manifest gives."""
    if snapshot.status != SnapshotStatus.SUCCEEDED or snapshot.path is None:
        raise BadRequest("This snapshot is not finished yet.")
    names = {f["name"] for f in (snapshot.manifest or {}).get("files", [])}
    if name not in names | {"manifest.json", "README.md"}:
        raise NotFound("No such file in this snapshot.")
    return snapshots_root() / snapshot.path / name


def _split_of(prompt: Any, split: SplitIn | None) -> str:
    """train or test, by a seeded hash of the prompt: one prompt, one side."""
    if split is None:
        return "train"
    key = orjson.dumps([split.seed, prompt_text(prompt)])
    draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return "test" if draw < split.test_fraction else "train"


@functools.cache
def code_version() -> str:
    """The Tandem version that made a file, with the git commit when there is one."""
    version = package_version("tandem")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"tandem {version}" + (f" (git {commit})" if commit else "")


@dataclass
class _Build:
    snapshot_id: int
    project_id: int
    project_name: str
    spec: SnapshotIn
    version: int
    lineage: str
    name: str
    owner: str = ""


def build_snapshot(*, snapshot_id: int) -> bool:
    """Body of the ``exports.build_snapshot`` task: idempotent, safe to run again.

    A copy claims the snapshot with an owner token; a redelivered copy takes over only from
    one that has not reported for ``job_claim_stale_s``; until then it returns False and
    the task looks again later. Every later write checks the owner, so two copies never
    both write the row, and each builds in its own folder.
    """
    owner = leases.new_owner()
    with session_scope(write=True) as db:
        if not leases.claim(db, ExportSnapshot, snapshot_id, owner):
            # Gone or finished (a finished snapshot never changes): done. Held by
            # another copy: look again later.
            return not leases.held_elsewhere(db, ExportSnapshot, snapshot_id)
        snapshot = db.get(ExportSnapshot, snapshot_id)
        project = db.get(Project, snapshot.project_id)
        job = _Build(snapshot_id, snapshot.project_id, project.name, spec_of(snapshot),
                     snapshot.version, snapshot.lineage, snapshot.name, owner)
    final = snapshots_root() / f"project-{job.project_id}" / f"snapshot-{snapshot_id}"
    if (final / "manifest.json").exists():
        _succeed(job, final)  # a copy that died after the rename: the files are complete
        return True
    for dead in final.parent.glob(f"{final.name}.tmp-*"):
        # Half-written folders of copies we took over from (killed, or superseded and
        # about to stop): nothing will ever finish or remove them otherwise.
        shutil.rmtree(dead, ignore_errors=True)
    tmp = final.with_name(f"{final.name}.tmp-{owner}")
    try:
        consensus.refresh(job.project_id,
                          progress=lambda _: _progress(job, 0))  # a heartbeat meanwhile
        tmp.mkdir(parents=True)
        manifest = _write_files(job, tmp)
        (tmp / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        (tmp / "README.md").write_text(dataset_card(manifest), encoding="utf-8")
        for f in tmp.iterdir():
            _fsync(f)
            f.chmod(0o444)
        _progress(job, -1)  # still ours? (raises Superseded if not)
        try:
            os.rename(tmp, final)  # fails if another copy's folder is already there
        except OSError:
            if not (final / "manifest.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        _succeed(job, final)
    except leases.Superseded:
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("snapshot %s: another copy of the task took over", snapshot_id)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        with session_scope(write=True) as db:
            leases.still_ours(db, ExportSnapshot, snapshot_id, owner,
                              status=SnapshotStatus.FAILED, finished_at=utcnow(),
                              error=f"export failed: {type(exc).__name__}: {exc}"[:2000])
        raise
    return True  # built, or left to the copy that took over


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _succeed(job: _Build, folder: Path) -> None:
    raw = (folder / "manifest.json").read_bytes()
    manifest = orjson.loads(raw)
    with session_scope(write=True) as db:
        leases.still_ours(
            db, ExportSnapshot, job.snapshot_id, job.owner, status=SnapshotStatus.SUCCEEDED,
            finished_at=utcnow(), manifest=manifest, sha256=hashlib.sha256(raw).hexdigest(),
            rows=manifest["counts"]["rows"], path=str(folder.relative_to(snapshots_root())),
            error=None)


def _progress(job: _Build, done: int, total: int | None = None) -> None:
    """Progress, and the owner's heartbeat (``done`` < 0: the heartbeat alone)."""
    values: dict[str, Any] = {}
    if done >= 0:
        values["done"] = done
    if total is not None:
        values["total"] = total
    with session_scope(write=True) as db:
        leases.hold(db, ExportSnapshot, job.snapshot_id, job.owner, **values)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while rows are made: every batch's objects survive long
    enough to reach the oldest generation, and full collections then took about a quarter
    of an export's time. The rows form no cycles; refcounting frees each batch."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_files(job: _Build, folder: Path) -> dict[str, Any]:
    spec = job.spec
    ext = "jsonl" if spec.container == Container.JSONL else "parquet"
    sides = ["train", "test"] if spec.split else ["train"]
    pair_rows = (pairs.PairRows(spec.format, spec.margin, fingerprints=True)
                 if spec.format in pairs.PAIR_FORMATS else None)
    out = {side: writers.RowWriter(folder / f"{side}.{ext}", fmt=spec.format,
                                   container=spec.container, margin=spec.margin,
                                   pair_rows=pair_rows)
           for side in sides}
    tally = Tally()
    try:
        with session_scope() as db:
            total = records_mod.count_candidates(db, project_id=job.project_id,
                                                 filters=spec.filters)
            records_mod.tally_statuses(db, project_id=job.project_id, filters=spec.filters,
                                       tally=tally)
        _progress(job, 0, total)
        shown = time.monotonic()
        with _gc_paused():
            for batch in _batches(job, tally, pair_rows):
                for prompt, rows in batch:
                    writer = out[_split_of(prompt, spec.split)]
                    if pair_rows is not None:
                        writer.write_pairs(rows)
                    else:
                        for row in rows:
                            writer.write(row)
                if time.monotonic() - shown >= PROGRESS_EVERY_S:
                    _progress(job, tally.items)
                    shown = time.monotonic()
        _progress(job, tally.items)
        files = [out[side].close() for side in sides]
    except BaseException:
        for w in out.values():
            w.abort()
        raise
    with (folder / FINGERPRINTS).open("wb") as f:  # side by side: no copy of them all
        for side in sides:
            out[side].fingerprints.tofile(f)
    return _manifest(job, tally, files)


def _batches(job: _Build, tally: Tally, pair_rows: pairs.PairRows | None
             ) -> Iterator[Iterable[tuple[Any, Iterable[Any]]]]:
    """Batches of items, each as (its prompt, its rows: parts made by ``pair_rows`` when
    given, else dicts)."""
    spec = job.spec
    if pair_rows is not None:
        yield from pairs.iter_pair_rows(project_id=job.project_id, filters=spec.filters,
                                        rows=pair_rows, tally=tally)
        return
    if spec.format == ExportFormat.TANDEM:
        from app.exports import tandem

        for batch in tandem.iter_batches(project_id=job.project_id, filters=spec.filters,
                                         tally=tally):
            yield [(item.prompt, [row]) for item, row in batch]
        return
    rows_of = ROWS[spec.format]
    for batch in records_mod.iter_records(project_id=job.project_id, filters=spec.filters,
                                          tally=tally):
        yield [(rec.prompt, rows_of(rec, spec.margin)) for rec in batch]


def _manifest(job: _Build, tally: Tally, files: list[dict]) -> dict[str, Any]:
    spec = job.spec
    schema = writers.arrow_schema(spec.format, spec.margin)
    return {
        "tandem_snapshot": 1,
        "snapshot_id": job.snapshot_id,
        "project": {"id": job.project_id, "name": job.project_name},
        "name": job.name,
        "lineage": job.lineage,
        "version": job.version,
        "format": spec.format.value,
        "container": spec.container.value,
        "margin": spec.margin,
        "filters": spec.filters.described(),
        "split": spec.split.model_dump() if spec.split else None,
        "schema": {f.name: str(f.type) for f in schema},
        "counts": {
            "rows": sum(f["rows"] for f in files),
            "items": tally.items,
            "pairs": tally.pairs,
            "pairs_by_source": dict(sorted(tally.by_source.items())),
            "ties_left_out": tally.ties,
            "awaiting_adjudication": tally.awaiting_adjudication,
            "left_out_by_tag": tally.filtered_out,
            "rows_per_split": {f["name"].split(".")[0]: f["rows"] for f in files},
        },
        "files": files,
        "fingerprint": writers.FINGERPRINT,
        "created_at": utcnow().isoformat(),
        "code_version": code_version(),
    }


@dataclass(frozen=True)
class Comparison:
    older: ExportSnapshot
    newer: ExportSnapshot
    added: int
    removed: int
    unchanged: int
    added_rows: list[dict]
    removed_rows: list[dict]


def compare(db: Session, *, project_id: int, older_id: int, newer_id: int,
            sample: int = 10) -> Comparison:
    """Rows in one snapshot and not the other, by fingerprint, with a sample of each."""
    older = get_snapshot(db, project_id=project_id, snapshot_id=older_id)
    newer = get_snapshot(db, project_id=project_id, snapshot_id=newer_id)
    for s in (older, newer):
        if s.status != SnapshotStatus.SUCCEEDED:
            raise BadRequest(f"Snapshot {s.id} is not finished.")
    a, b = _fingerprints(older), _fingerprints(newer)
    added_mask, removed_mask = ~np.isin(b, a), ~np.isin(a, b)
    return Comparison(
        older=older, newer=newer, added=int(added_mask.sum()), removed=int(removed_mask.sum()),
        unchanged=int((~added_mask).sum()),
        added_rows=_rows_at(newer, np.flatnonzero(added_mask)[:sample]),
        removed_rows=_rows_at(older, np.flatnonzero(removed_mask)[:sample]))


def _fingerprints(snapshot: ExportSnapshot) -> np.ndarray:
    folder = snapshots_root() / snapshot.path
    if snapshot.manifest.get("fingerprint") == writers.FINGERPRINT:
        return np.fromfile(folder / FINGERPRINTS, dtype=np.uint64)
    # Made before the fingerprint changed: this snapshot's are made again from its rows (a
    # few seconds per million rows), so that old and new versions still compare.
    paths = [folder / f["name"] for f in snapshot.manifest["files"]]
    made = writers.fingerprints_of(paths, Container(snapshot.container),
                                   ExportFormat(snapshot.format))
    return np.frombuffer(made, dtype=np.uint64)


def _rows_at(snapshot: ExportSnapshot, positions: np.ndarray) -> list[dict]:
    """Rows by position across the snapshot's files (train first, then test)."""
    wanted = [int(p) for p in positions]
    out: list[dict] = []
    start = 0
    for f in snapshot.manifest["files"]:
        local = {p - start for p in wanted if start <= p < start + f["rows"]}
        if local:
            out.extend(writers.read_rows(snapshots_root() / snapshot.path / f["name"],
                                         Container(snapshot.container), local,
                                         limit=len(local)))
        start += f["rows"]
    return out
