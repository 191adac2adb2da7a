"""Large imports run as Celery jobs: on Redis and on the serverless (filesystem) broker.

The worker tests start a real ``celery worker`` process with this test's settings; the
in-process app and the worker share the database (and, for the filesystem broker, the
broker folder under TANDEM_DATA_DIR).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support import (
    AppEnv,
    login,
    make_project,
    make_user,
    reset_caches,
    sample_items,
    start_worker,
    stop_process,
    wait_for,
    write,
)

N = 300
SYNC_LIMIT = "50"  # so that a 300-item file counts as large and goes to a job
JOB_RE = re.compile(r'id="import-job-(\d+)"')
RAN_RE = re.compile(r"Task items\.run_import\[[0-9a-f-]+\] succeeded")
RECEIVED = "Task items.run_import["


def jsonl(items: list[dict]) -> bytes:
    return ("\n".join(json.dumps(i) for i in items) + "\n").encode()


def item_counts(project_id: int) -> tuple[int, int]:
    """(all rows, ready rows) for the project, read in a fresh session."""
    from app.core.db import session_scope
    from app.models import Item

    with session_scope() as db:
        total = db.scalar(select(func.count()).select_from(Item)
                          .where(Item.project_id == project_id))
        ready = db.scalar(select(func.count()).select_from(Item)
                          .where(Item.project_id == project_id, Item.ready.is_(True)))
    return total or 0, ready or 0


def job_count(project_id: int) -> int:
    from app.core.db import session_scope
    from app.models import ImportJob

    with session_scope() as db:
        return db.scalar(select(func.count()).select_from(ImportJob)
                         .where(ImportJob.project_id == project_id)) or 0


def load_job(job_id: int):  # noqa: ANN201
    from app.core.db import session_scope
    from app.models import ImportJob

    with session_scope() as db:
        job = db.get(ImportJob, job_id)
        assert job is not None
        db.expunge(job)
        return job


def log_tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no worker log)"


def use_env(monkeypatch: pytest.MonkeyPatch, app_env: AppEnv, **extra: str) -> dict[str, str]:
    """Set extra settings here and return the full env for the worker process."""
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    return dict(app_env.env, **extra)


def upload_page(client, project_id: int, csrf: str, data: bytes, name: str = "big.jsonl"):  # noqa: ANN001, ANN201
    return client.post(f"/projects/{project_id}/import",
                       data={"csrf_token": csrf},
                       files={"file": (name, data, "application/x-ndjson")})


def wait_page_job(client, project_id: int, job_id: int, log: Path, proc) -> str:  # noqa: ANN001
    """Poll the job partial until it is finished; returns its HTML."""
    def finished() -> str | None:
        assert proc.poll() is None, f"worker exited ({proc.returncode}):\n{log_tail(log)}"
        response = client.get(f"/projects/{project_id}/import-jobs/{job_id}")
        assert response.status_code == 200, response.text
        if "— succeeded" in response.text or "— failed" in response.text:
            return response.text
        return None

    try:
        return wait_for(finished, timeout=60, interval=0.3, what=f"import job {job_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{log_tail(log)}") from None


@pytest.mark.worker
@pytest.mark.parametrize("backend", ["postgresql"])
def test_large_import_runs_as_a_job_on_the_redis_broker(
    request: pytest.FixtureRequest, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from app.core.config import get_settings

    worker_env = request.getfixturevalue("redis_broker")(TANDEM_IMPORT_SYNC_LIMIT=SYNC_LIMIT)
    assert get_settings().resolved_broker_url.startswith("redis://")
    client = request.getfixturevalue("client")  # built after the env changes

    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Redis import")
    data = jsonl(sample_items(N))
    log = tmp_path / "worker.log"
    proc = start_worker(worker_env, queues="import", log=log)
    try:
        csrf = login(client, "admin@example.org")

        response = upload_page(client, project.id, csrf, data)
        assert response.status_code == 200, response.text
        assert "import-job-" in response.text
        job_id = int(JOB_RE.search(response.text).group(1))

        html = wait_page_job(client, project.id, job_id, log, proc)
        assert "— succeeded" in html, f"{html}\nworker log:\n{log_tail(log)}"
        assert "Imported 300 new items" in html
        assert item_counts(project.id) == (N, N)
        job = load_job(job_id)
        assert job.status == "succeeded"
        assert job.report["created"] == N and job.report["unchanged"] == 0
        assert job.content is None  # the stored file is dropped once done

        # The same file again: a second job, which finds every item already there.
        response = upload_page(client, project.id, csrf, data)
        assert response.status_code == 200, response.text
        second = int(JOB_RE.search(response.text).group(1))
        assert second != job_id
        html = wait_page_job(client, project.id, second, log, proc)
        assert "— succeeded" in html, f"{html}\nworker log:\n{log_tail(log)}"
        job = load_job(second)
        assert job.report["created"] == 0 and job.report["unchanged"] == N
        assert item_counts(project.id) == (N, N)
    finally:
        stop_process(proc)
        import redis

        r = redis.Redis.from_url(worker_env["TANDEM_BROKER_URL"])
        keys = list(r.scan_iter(match=f"{worker_env['TANDEM_BROKER_KEY_PREFIX']}*"))
        r.close()
    assert keys, "nothing in Redis under this test's key prefix"
    worker_log = log_tail(log, 100_000)
    assert "transport:   redis://" in worker_log
    assert len(RAN_RE.findall(worker_log)) == 2, worker_log
    assert not (app_env.data_dir / "broker").exists() or not any(
        (app_env.data_dir / "broker").iterdir())  # nothing went to the filesystem broker


@pytest.mark.worker
@pytest.mark.parametrize("backend", ["sqlite"])
def test_large_import_job_on_the_serverless_broker(
    app_env: AppEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from app.auth.service import create_api_token
    from app.core.config import get_settings
    from app.main import create_app

    worker_env = use_env(monkeypatch, app_env, TANDEM_IMPORT_SYNC_LIMIT=SYNC_LIMIT)
    assert get_settings().resolved_broker_url == "filesystem://"
    assert worker_env["TANDEM_DATA_DIR"] == str(app_env.data_dir)  # the worker shares the folder

    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Filesystem import")
    secret = write(lambda db: create_api_token(db, user=admin, project_id=project.id,
                                               name="ci", scopes=["import", "read"]).secret)
    auth = {"Authorization": f"Bearer {secret}"}
    data = jsonl(sample_items(N))
    log = tmp_path / "worker.log"
    proc = start_worker(worker_env, queues="import", log=log)
    try:
        with TestClient(create_app(), base_url="http://testserver") as client:
            def run_job() -> dict:
                response = client.post(f"/api/v1/projects/{project.id}/imports", headers=auth,
                                       files={"file": ("big.jsonl", data, "application/x-ndjson")})
                assert response.status_code == 202, response.text
                job_id = response.json()["job_id"]
                assert isinstance(job_id, int)

                def finished() -> dict | None:
                    assert proc.poll() is None, f"worker exited:\n{log_tail(log)}"
                    got = client.get(f"/api/v1/projects/{project.id}/imports/{job_id}",
                                     headers=auth)
                    assert got.status_code == 200, got.text
                    body = got.json()
                    return body if body["status"] in ("succeeded", "failed") else None

                try:
                    body = wait_for(finished, timeout=60, interval=0.3, what=f"job {job_id}")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\nworker log:\n{log_tail(log)}") from None
                assert body["status"] == "succeeded", f"{body}\nworker log:\n{log_tail(log)}"
                assert body["id"] == job_id and body["percent"] == 100
                return body

            first = run_job()
            assert first["written"] == N
            assert first["report"]["created"] == N and first["report"]["unchanged"] == 0
            assert item_counts(project.id) == (N, N)

            second = run_job()
            assert second["id"] != first["id"]
            assert second["report"]["created"] == 0 and second["report"]["unchanged"] == N
            assert item_counts(project.id) == (N, N)
    finally:
        stop_process(proc)
    assert len(RAN_RE.findall(log_tail(log, 100_000))) == 2


@pytest.mark.worker
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_bad_large_file_imports_nothing(
    request: pytest.FixtureRequest, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    worker_env = use_env(monkeypatch, app_env, TANDEM_IMPORT_SYNC_LIMIT=SYNC_LIMIT)
    client = request.getfixturevalue("client")

    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Bad import")
    lines = [json.dumps(i) for i in sample_items(N)]
    lines[149] = '{"external_id": "item-149", "prompt": "broken'  # line 150: not JSON
    data = ("\n".join(lines) + "\n").encode()
    log = tmp_path / "worker.log"
    proc = start_worker(worker_env, queues="import", log=log)
    try:
        csrf = login(client, "admin@example.org")
        response = upload_page(client, project.id, csrf, data)
        assert response.status_code == 422, response.text
        assert "import-job-" not in response.text
        assert "Nothing was imported: 1 bad line out of 300" in response.text
        assert re.search(r"<td>150</td>", response.text), response.text
        assert job_count(project.id) == 0  # validation runs before anything is queued
        assert item_counts(project.id) == (0, 0)
        # Nothing was queued: the broker folder is empty and the worker, once up, gets no task.
        broker = app_env.data_dir / "broker"
        assert not broker.exists() or not any(broker.iterdir()), list(broker.iterdir())
        wait_for(lambda: "ready." in log_tail(log), timeout=30, what="worker ready")
        assert proc.poll() is None, log_tail(log)
    finally:
        stop_process(proc)
    assert RECEIVED not in log_tail(log, 100_000)


def test_job_is_idempotent(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running the task twice (a redelivery after a crash, say) does the work once."""
    from app.items.service import import_file, run_import_job
    from app.models import Project, User

    use_env(monkeypatch, app_env, TANDEM_IMPORT_SYNC_LIMIT="10")
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Idempotent")
    n = 120
    data = jsonl(sample_items(n))

    # No worker runs: the message goes to the filesystem broker after commit and stays there.
    report = write(lambda db: import_file(db, project=db.get(Project, project.id),
                                          user=db.get(User, admin.id), data=data,
                                          filename="big.jsonl", file_format="jsonl"))
    assert report.ok and report.job_id is not None and report.created == 0
    assert load_job(report.job_id).status == "queued"
    assert item_counts(project.id) == (0, 0)

    run_import_job(job_id=report.job_id)
    job = load_job(report.job_id)
    assert job.status == "succeeded" and job.report["created"] == n
    assert item_counts(project.id) == (n, n)

    run_import_job(job_id=report.job_id)  # a finished job is left alone
    job = load_job(report.job_id)
    assert job.status == "succeeded"
    assert job.report["created"] == n and job.report["unchanged"] == 0
    assert item_counts(project.id) == (n, n)


def test_job_rerun_after_a_crash_starts_again(app_env: AppEnv,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A job left 'running' with half its (invisible) items written is redone from nothing."""
    from sqlalchemy import insert, update

    from app.items.service import import_file, run_import_job
    from app.models import ImportJob, Item, Project, User

    use_env(monkeypatch, app_env, TANDEM_IMPORT_SYNC_LIMIT="10")
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Crashed")
    n = 60
    report = write(lambda db: import_file(db, project=db.get(Project, project.id),
                                          user=db.get(User, admin.id),
                                          data=jsonl(sample_items(n)), filename="big.jsonl",
                                          file_format="jsonl"))
    assert report.job_id is not None

    def crash_halfway(db):  # noqa: ANN001, ANN202
        db.execute(update(ImportJob).where(ImportJob.id == report.job_id)
                   .values(status="running", phase="importing"))
        db.execute(insert(Item), [
            {"project_id": project.id, "external_id": f"item-{i}", "prompt": "half-written",
             "meta": {}, "import_job_id": report.job_id, "ready": False} for i in range(25)])

    write(crash_halfway)
    assert item_counts(project.id) == (25, 0)

    run_import_job(job_id=report.job_id)
    job = load_job(report.job_id)
    assert job.status == "succeeded"
    assert job.report["created"] == n and job.report["unchanged"] == 0
    assert item_counts(project.id) == (n, n)


def test_a_redelivered_job_leaves_a_live_copy_alone_then_takes_over_a_silent_one(
        app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two copies of the task never import at once; a killed copy's job is not stuck."""
    from datetime import timedelta

    from sqlalchemy import update

    from app.items.service import import_file, run_import_job
    from app.models import ImportJob, Project, User
    from app.models.types import utcnow

    use_env(monkeypatch, app_env, TANDEM_IMPORT_SYNC_LIMIT="10")
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, name="Redelivered")
    report = write(lambda db: import_file(db, project=db.get(Project, project.id),
                                          user=db.get(User, admin.id),
                                          data=jsonl(sample_items(40)), filename="big.jsonl",
                                          file_format="jsonl"))

    def mark(**values) -> None:  # noqa: ANN003
        write(lambda db: db.execute(update(ImportJob).where(ImportJob.id == report.job_id)
                                    .values(**values)))

    mark(status="running", owner="other-copy", heartbeat_at=utcnow())
    assert run_import_job(job_id=report.job_id) is False  # look again later
    assert load_job(report.job_id).owner == "other-copy"
    assert item_counts(project.id) == (0, 0)

    mark(heartbeat_at=utcnow() - timedelta(hours=1))  # that copy went silent
    assert run_import_job(job_id=report.job_id) is True
    job = load_job(report.job_id)
    assert job.status == "succeeded" and job.owner != "other-copy"
    assert item_counts(project.id) == (40, 40)
    assert run_import_job(job_id=report.job_id) is True  # finished: nothing to do
