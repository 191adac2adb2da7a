"""SIGTERM, as a deploy or an orchestrator sends it: the web server finishes the requests it
has accepted and exits 0; a Celery worker finishes the batch it is judging, and the rest of
the run is done by the worker started after it, with one AI label per item."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.judging import repository as judging_repo
from app.judging import service as judging
from app.judging.schemas import RunIn
from app.models import AiLabel, HumanLabel, Item, JudgeRun
from tests.faults.labeling import Labeler
from tests.judging.fake_openai import FakeOpenAI
from tests.judging.test_judge_reliability import configure, run_state
from tests.support import (
    login,
    make_project,
    make_user,
    reset_caches,
    sample_items,
    start_server,
    start_worker,
    stop_process,
    wait_for,
    write,
)

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])
IMPORTED = 2000


def _token(admin, project_id: int) -> str:  # noqa: ANN001
    from app.auth.service import create_api_token

    return write(create_api_token, user=admin, project_id=project_id, name="import",
                 scopes=["import", "read"]).secret


def test_sigterm_lets_the_server_finish_what_it_accepted(app_env, tmp_path) -> None:
    admin = make_user("admin@example.org", admin=True)
    emails = [f"labeler{i}@example.org" for i in range(2)]
    for email in emails:
        make_user(email)
    project = make_project(admin, members={e: "labeler" for e in emails},
                           items=sample_items(400))
    token = _token(admin, project.id)
    server, base = start_server(app_env.env, tmp_path / "server.log")
    stop = threading.Event()
    labelers: list[Labeler] = []
    imported: dict[str, object] = {}

    signalled = threading.Event()
    body = json.dumps({"items": sample_items(IMPORTED, responses=3, start=10_000)}).encode()

    def slow_body():  # noqa: ANN202
        # The request is surely in flight when the signal comes: half of its body is sent
        # before, the rest after (the import itself takes well under a second).
        yield body[: len(body) // 2]
        signalled.wait(30)
        time.sleep(0.2)
        yield body[len(body) // 2 :]

    def import_items() -> None:
        # One request: a couple of thousand items in one call.
        imported["sent"] = time.monotonic()
        try:
            imported["response"] = httpx.post(
                f"{base}/api/v1/projects/{project.id}/items", content=slow_body(),
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json"}, timeout=60)
        except httpx.HTTPError as exc:
            imported["error"] = exc
        imported["answered"] = time.monotonic()

    try:
        for email in emails:
            client = httpx.Client(base_url=base)
            labelers.append(Labeler(client, login(client, email), project.id, stop))
        threads = [threading.Thread(target=lb.run) for lb in labelers]
        for t in threads:
            t.start()
        wait_for(lambda: sum(len(lb.acked) for lb in labelers) >= 10, timeout=60,
                 what="labels before the SIGTERM")
        threads.append(threading.Thread(target=import_items))
        threads[-1].start()
        time.sleep(0.5)  # the first half of the import's body is at the server by now
        server.send_signal(signal.SIGTERM)
        sigterm = time.monotonic()
        signalled.set()
        exit_code = server.wait(timeout=30)
        exited_s = time.monotonic() - sigterm
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop.set()
        for lb in labelers:
            lb.client.close()
        stop_process(server)

    log = (tmp_path / "server.log").read_text()
    print(f"\nexit {exit_code} {exited_s:.2f} s after SIGTERM; the import was answered "
          f"{imported['answered'] - sigterm:+.2f} s after it; "
          f"{sum(len(lb.acked) for lb in labelers)} labels acknowledged")
    # uvicorn re-raises the SIGTERM once it has shut down cleanly, so that a supervisor sees
    # the process ended by the signal it sent; the log tells a clean end from a kill.
    assert exit_code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log and "Finished server process" in log
    assert "Traceback" not in log, log
    # The import was in flight when the signal came, and it was finished, not cut off.
    assert imported["answered"] > sigterm, "the import ended before the SIGTERM"
    assert "error" not in imported, imported
    response = imported["response"]
    assert response.status_code == 200, response.text
    assert response.json()["created"] == IMPORTED
    with session_scope() as db:
        items = db.scalar(select(func.count()).select_from(Item)
                          .where(Item.project_id == project.id))
        stored = set(db.execute(select(HumanLabel.item_id, HumanLabel.idempotency_key)).all())
    assert items == 400 + IMPORTED
    # Every label the server acknowledged is stored; a submit that met the closed door was
    # never answered, and at most it is stored too (never twice: keys are unique).
    acked = {a for lb in labelers for a in lb.acked}
    unsure = {(int(d["item_id"]), d["idempotency_key"]) for lb in labelers
              for path, d in lb.uncertain if path.endswith("/submit")}
    assert acked <= stored and stored - acked <= unsure
    assert not [p for lb in labelers for p in lb.problems]


@pytest.mark.worker
def test_sigterm_lets_a_worker_finish_its_batch_and_the_next_worker_the_run(
        app_env, own_redis, tmp_path, monkeypatch) -> None:
    env = dict(app_env.env, TANDEM_BROKER_URL=own_redis.url(0), JUDGE_KEY="sk-sigterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(12))

    def counts(run_id: int) -> dict[str, int]:
        with session_scope() as db:
            return judging_repo.status_counts(db, run_id=run_id)

    with FakeOpenAI() as fake:
        fake.delay = 0.4  # a batch (two items, both orders) takes about 1.6 s
        configure(project, fake)
        first = start_worker(env, queues="judge", log=tmp_path / "w1.log")
        second = None
        try:
            run = write(judging.start_run, project=project, user=admin, data=RunIn())
            wait_for(lambda: run_state(run.id)[1] >= 2 and counts(run.id)["running"] > 0,
                     timeout=60, what="a batch in progress")
            in_progress = counts(run.id)["running"]
            first.send_signal(signal.SIGTERM)
            sigterm = time.monotonic()
            assert first.wait(timeout=30) == 0
            exited_s = time.monotonic() - sigterm
            # The batch it held was finished, not dropped half-way.
            after_first = counts(run.id)
            assert after_first["running"] == 0, after_first
            assert after_first["pending"] > 0, "the run finished before the SIGTERM"
            second = start_worker(env, queues="judge", log=tmp_path / "w2.log")
            wait_for(lambda: run_state(run.id)[0] == "succeeded", timeout=120,
                     what="the run to finish on the second worker")
        finally:
            stop_process(first)
            if second:
                stop_process(second)
    with session_scope() as db:
        progress = judging.progress(db, run=db.get(JudgeRun, run.id))
        per_item = db.execute(select(AiLabel.item_id, func.count())
                              .where(AiLabel.run_id == run.id)
                              .group_by(AiLabel.item_id)).all()
    print(f"\n{in_progress} items in progress at the SIGTERM; the worker exited "
          f"{exited_s:.2f} s later with them done; {len(fake.requests)} judge calls for "
          f"{2 * 12} questions")
    assert progress.counts == {"pending": 0, "running": 0, "done": 12, "failed": 0}
    assert len(per_item) == 12 and {n for _, n in per_item} == {1}
    assert len(fake.requests) == 2 * 12  # no batch was judged twice
