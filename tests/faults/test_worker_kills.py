"""Workers killed with SIGKILL in the middle of a job, on Redis and PostgreSQL: a fresh
worker finishes the job, which loses nothing and duplicates nothing.

The broker hands a killed worker's task out again after its visibility timeout (a few
seconds here); job claims go stale after TANDEM_JOB_CLAIM_STALE_S. The judge run's kill
test is tests/judging/test_judge_reliability.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.core.db import get_engine, session_scope
from app.models import ExportSnapshot, ImportJob, Item, Response
from tests.items.test_import_jobs import log_tail
from tests.support import (
    make_project,
    make_user,
    sample_items,
    start_worker,
    stop_process,
    wait_for,
    write,
)

pytestmark = [pytest.mark.worker, pytest.mark.parametrize("backend", ["postgresql"])]
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def redis_env(redis_broker) -> dict[str, str]:  # noqa: ANN001
    """A short visibility timeout, and job claims that go stale later than that (as in
    production: a redelivered copy can find the dead worker's claim still fresh)."""
    return redis_broker(TANDEM_BROKER_VISIBILITY_TIMEOUT_S="4", TANDEM_JOB_CLAIM_STALE_S="10")


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)  # no chance to ack, roll back or clean up
    proc.wait(timeout=10)


def until(predicate, *, timeout: float, what: str, procs: list, logs: list[Path]):  # noqa: ANN001, ANN201
    """wait_for, but a worker that exits early, or a timeout, shows the workers' logs."""
    def check():  # noqa: ANN202
        for proc, log in zip(procs, logs, strict=True):
            assert proc.poll() is None, f"worker exited ({proc.returncode}):\n{log_tail(log)}"
        return predicate()

    try:
        return wait_for(check, timeout=timeout, interval=0.05, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(log_tail(g) for g in logs)) from None


# --------------------------------------------------------------------------- import job

def job_state(job_id: int) -> tuple[str, str, int]:
    """(status, phase, item rows the job has written, visible or not)."""
    with session_scope() as db:
        job = db.get(ImportJob, job_id)
        written = db.scalar(select(func.count()).select_from(Item)
                            .where(Item.import_job_id == job_id))
        return job.status, job.phase, written or 0


def test_an_import_job_whose_worker_is_killed_imports_every_item_once(
    redis_env, tmp_path: Path,
) -> None:
    from app.items.service import import_file
    from app.models import Project, User

    n = 6000
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Killed import")
    data = ("\n".join(json.dumps(i) for i in sample_items(n, responses=3)) + "\n").encode()
    report = write(lambda db: import_file(db, project=db.get(Project, project.id),
                                          user=db.get(User, admin.id), data=data,
                                          filename="big.jsonl", file_format="jsonl"))
    assert report.job_id is not None  # over the sync limit: a job for a worker
    job_id = report.job_id
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    first = start_worker(redis_env, queues="import", log=logs[0])
    second = None
    try:
        until(lambda: job_state(job_id)[2] > 0, timeout=120, what="rows to land",
              procs=[first], logs=logs[:1])
        kill(first)
        status, phase, written = job_state(job_id)
        assert (status, phase) == ("running", "importing") and 0 < written < n, \
            f"the job was not mid-import when killed: {status} {phase} {written}"
        with session_scope() as db:  # the killed run's rows are there, and nobody sees them
            assert db.scalar(select(func.count()).select_from(Item).where(
                Item.project_id == project.id, Item.ready.is_(True))) == 0
        second = start_worker(redis_env, queues="import", log=logs[1])
        until(lambda: job_state(job_id)[0] in ("succeeded", "failed"), timeout=180,
              what="the job to finish on the new worker", procs=[second], logs=logs[1:])
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)

    with session_scope() as db:
        job = db.get(ImportJob, job_id)
        assert job.status == "succeeded", job.error
        assert job.report["created"] == n and job.report["unchanged"] == 0
        assert job.content is None
        items = db.execute(select(Item.external_id, Item.ready)
                           .where(Item.project_id == project.id)).all()
        per_item = db.execute(
            select(Response.item_id, func.count(), func.count(func.distinct(Response.position)))
            .join(Item, Item.id == Response.item_id).where(Item.project_id == project.id)
            .group_by(Response.item_id)).all()
    assert len(items) == n and {e for e, _ in items} == {f"item-{i}" for i in range(n)}
    assert all(ready for _, ready in items)  # nothing half-imported left behind
    assert len(per_item) == n and {(c, d) for _, c, d in per_item} == {(3, 3)}
    assert "Task items.run_import[" in log_tail(logs[1], 100_000)


# --------------------------------------------------------------------------- snapshot build

SEED_SQL = """
WITH i AS (
    INSERT INTO items (project_id, external_id, prompt, metadata, ready, created_at,
                       label_count, ai_accepted, queue_rank, consensus_stale, is_gold)
    SELECT :pid, 'bulk-' || lpad(g::text, 7, '0'), to_jsonb('Question number ' || g || '?'),
           '{}'::jsonb, true, :now, 1, false, 1, false, false
    FROM generate_series(1, :n) AS g
    RETURNING id
), r AS (
    INSERT INTO responses (item_id, position, text, model_name, source, created_at)
    SELECT i.id, p.pos, 'Answer ' || p.pos || ' to item ' || i.id || '. ' ||
           repeat('Some more words that make a response of a realistic length. ', 8),
           p.model, 'imported', :now
    FROM i CROSS JOIN (VALUES (0, 'model-a'), (1, 'model-b')) AS p(pos, model)
    RETURNING id, item_id, position
), pairs AS (
    SELECT item_id, min(id) FILTER (WHERE position = 0) AS chosen,
           min(id) FILTER (WHERE position = 1) AS rejected
    FROM r GROUP BY item_id
)
INSERT INTO item_consensus (item_id, project_id, status, source, ranking, pairs, pair_count,
                            agreement, human_labels, confidence, decided_at, computed_at)
SELECT item_id, :pid, 'decided', 'human', jsonb_build_array(chosen, rejected),
       jsonb_build_array(jsonb_build_array(chosen, rejected, 1.0, 2.0)), 1,
       NULL, 1, NULL, :now, :now
FROM pairs
"""


def seed_decided_pairs(project_id: int, n: int) -> None:
    """``n`` items, each with one decided human pair, written in one statement (the app's
    own labeling path would take minutes for this many)."""
    from app.models.types import utcnow

    with get_engine().begin() as conn:
        conn.execute(text(SEED_SQL), {"pid": project_id, "n": n,
                                      "now": utcnow().replace(tzinfo=None)})
        conn.execute(text("ANALYZE items, responses, item_consensus"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_snapshot_whose_worker_is_killed_is_built_once_and_whole(
    redis_env, app_env, tmp_path: Path,
) -> None:
    from app.exports.schemas import SnapshotIn
    from app.exports.snapshots import create_snapshot
    from app.models import Project, User

    n = 60_000
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Killed export")
    seed_decided_pairs(project.id, n)
    folder = app_env.data_dir / "exports" / f"project-{project.id}"
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    first = start_worker(redis_env, queues="export", log=logs[0])
    second = None
    try:
        until(lambda: "ready." in log_tail(logs[0]), timeout=60, what="the worker",
              procs=[first], logs=logs[:1])
        snapshot_id = write(lambda db: create_snapshot(
            db, project=db.get(Project, project.id), user=db.get(User, admin.id),
            spec=SnapshotIn(format="standard")).id)
        until(lambda: folder.is_dir() and any(
            (p / "train.jsonl").exists() for p in folder.glob("snapshot-*.tmp-*")),
            timeout=120, what="the build to start writing", procs=[first], logs=logs[:1])
        kill(first)
        with session_scope() as db:
            assert db.get(ExportSnapshot, snapshot_id).status == "running"
        leftovers = [p.name for p in folder.iterdir()]
        assert len(leftovers) == 1 and ".tmp-" in leftovers[0], \
            f"the build was not mid-way when killed: {leftovers}"
        second = start_worker(redis_env, queues="export", log=logs[1])

        def settled() -> bool:
            with session_scope() as db:
                return db.get(ExportSnapshot, snapshot_id).status in ("succeeded", "failed")

        until(settled, timeout=240, what="the snapshot to finish on the new worker",
              procs=[second], logs=logs[1:])
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)

    with session_scope() as db:
        snap = db.get(ExportSnapshot, snapshot_id)
        db.expunge(snap)
    assert snap.status == "succeeded", snap.error
    assert sorted(p.name for p in folder.iterdir()) == [f"snapshot-{snapshot_id}"]  # no tmp
    built = folder / f"snapshot-{snapshot_id}"
    assert sha256_file(built / "manifest.json") == snap.sha256
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest == snap.manifest
    for f in manifest["files"]:
        assert sha256_file(built / f["name"]) == f["sha256"], f["name"]
    assert snap.rows == manifest["counts"]["rows"] == manifest["counts"]["pairs"] == n
    lines = (built / "train.jsonl").read_bytes().splitlines()
    assert len(lines) == n and len(set(lines)) == n  # every pair once
    prompts = {json.loads(line)["prompt"] for line in lines}
    assert prompts == {f"Question number {g}?" for g in range(1, n + 1)}
