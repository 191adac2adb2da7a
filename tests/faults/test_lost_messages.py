"""The broker loses a job's message (Redis down when the job was made, or restarted without
persistence while the job waited): the user's request still succeeds, and the workers'
watchdog sends every job still queued again, so each runs exactly once."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import ExportSnapshot, ImportJob, Item
from tests.exports.test_snapshots import rate, rated_items
from tests.items.test_import_jobs import log_tail, use_env
from tests.support import (
    label_all,
    login,
    make_project,
    make_user,
    sample_items,
    start_worker,
    stop_process,
    wait_for,
)

pytestmark = [pytest.mark.worker]


def _jsonl(start: int, n: int) -> bytes:
    return "\n".join(json.dumps(r) for r in sample_items(n, start=start)).encode()


def _import(client, project_id: int, csrf: str, start: int, n: int) -> int:  # noqa: ANN001
    page = client.post(f"/projects/{project_id}/import", data={"csrf_token": csrf},
                       files={"file": ("items.jsonl", _jsonl(start, n), "application/json")})
    assert page.status_code == 200, page.text
    return int(re.search(r"import-jobs/(\d+)", page.text).group(1))


def _snapshot(client, project_id: int, csrf: str) -> int:  # noqa: ANN001
    page = client.post(f"/projects/{project_id}/snapshots", data={
        "csrf_token": csrf, "format": "standard", "container": "jsonl", "sources": ["human"],
        "test_fraction": "0", "seed": "1", "min_agreement": "", "tag": ""},
        follow_redirects=True)
    assert page.status_code == 200, page.text
    return int(re.search(r'id="snapshot-(\d+)"', page.text).group(1))


def _status(model, row_id: int) -> str:  # noqa: ANN001
    with session_scope() as db:
        return db.get(model, row_id).status


@pytest.mark.parametrize("backend", ["postgresql"])
def test_jobs_whose_messages_the_broker_lost_still_run_once(
        request, app_env, own_redis, monkeypatch, tmp_path) -> None:  # noqa: ANN001
    env = use_env(monkeypatch, app_env, TANDEM_BROKER_URL=own_redis.url(0),
                  TANDEM_IMPORT_SYNC_LIMIT="10", TANDEM_JOB_RESEND_AFTER_S="2",
                  TANDEM_JUDGE_CLAIM_STALE_S="2")
    client = request.getfixturevalue("client")  # built after the env changes
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="rate_and_edit", items=rated_items(8))
    assert label_all(project, admin, rate) == 8  # under the sync limit: imported at once
    other = make_project(admin, name="Imports")
    csrf = login(client, "admin@example.org")

    # 1. Redis is down when the jobs are made: the requests succeed, the jobs wait queued.
    own_redis.stop()
    import_down = _import(client, other.id, csrf, 0, 30)
    snapshot_down = _snapshot(client, project.id, csrf)
    own_redis.start()
    # 2. Redis restarts without persistence while jobs wait in it: their messages are gone.
    import_lost = _import(client, other.id, csrf, 30, 30)
    snapshot_lost = _snapshot(client, project.id, csrf)
    own_redis.restart()
    assert {_status(ImportJob, import_down), _status(ImportJob, import_lost),
            _status(ExportSnapshot, snapshot_down),
            _status(ExportSnapshot, snapshot_lost)} == {"queued"}

    log = tmp_path / "worker.log"
    worker = start_worker(env, queues="import,export", log=log)
    try:
        def all_done() -> bool:
            assert worker.poll() is None, f"worker exited:\n{log_tail(log)}"
            return {_status(ImportJob, import_down), _status(ImportJob, import_lost),
                    _status(ExportSnapshot, snapshot_down),
                    _status(ExportSnapshot, snapshot_lost)} == {"succeeded"}

        try:
            wait_for(all_done, timeout=90, interval=0.5, what="the lost jobs to run")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tail(log)}") from None
    finally:
        stop_process(worker)

    with session_scope() as db:
        external = list(db.scalars(select(Item.external_id).where(Item.project_id == other.id)))
        rows = {s.id: s.rows for s in db.scalars(select(ExportSnapshot))}
        unpublished = db.scalar(select(func.count()).select_from(Item)
                                .where(Item.project_id == other.id, Item.ready.is_(False)))
    assert len(external) == 60 and len(set(external)) == 60  # each item once
    assert unpublished == 0
    assert rows[snapshot_down] == rows[snapshot_lost] > 0
    assert "sent items.run_import again" in log.read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_watchdog_requeues_jobs_of_dead_workers_and_lost_messages_only(app_env) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.core.jobs import requeue_lost
    from app.models.types import utcnow
    from tests.support import write

    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    now = utcnow()
    old = now - timedelta(hours=1)
    rows = {"live": ("running", now, old), "dead": ("running", old, old),
            "fresh": ("queued", None, now), "lost": ("queued", None, old),
            "sent": ("queued", now, old), "done": ("succeeded", old, old)}

    def make(db):  # noqa: ANN001, ANN202
        ids = {}
        for name, (status, heartbeat, created) in rows.items():
            job = ImportJob(project_id=project.id, filename=name, file_format="jsonl",
                            content=b"", owner="copy" if status == "running" else None)
            db.add(job)
            db.flush()
            db.execute(update(ImportJob).where(ImportJob.id == job.id).values(
                status=status, heartbeat_at=heartbeat, created_at=created,
                started_at=created if status != "queued" else None))
            ids[name] = job.id
        return ids

    ids = write(make)
    sent = write(lambda db: requeue_lost(db, ImportJob, "items.run_import",
                                         queued_after_s=300, stale_after_s=600))
    assert sorted(sent) == sorted([ids["dead"], ids["lost"]])
    assert {name: _status(ImportJob, i) for name, i in ids.items()} == {
        "live": "running", "dead": "queued", "fresh": "queued", "lost": "queued",
        "sent": "queued", "done": "succeeded"}
    with session_scope() as db:
        assert db.get(ImportJob, ids["dead"]).owner is None  # the silent copy lost it
    # Sent once a period: the next round leaves them alone.
    assert write(lambda db: requeue_lost(db, ImportJob, "items.run_import",
                                         queued_after_s=300, stale_after_s=600)) == []
