"""Redis (the broker, without persistence) restarted in the middle of a judge run: the
queued batches are gone with it, the worker reconnects by itself, its watchdog hands the
run's unfinished items out again, and the run ends with one AI label per item."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.judging import service
from app.judging.schemas import RunIn
from app.models import AiLabel, JudgeRun
from tests.judging.fake_openai import FakeOpenAI
from tests.judging.test_judge_reliability import configure, run_state
from tests.support import (
    make_project,
    make_user,
    reset_caches,
    sample_items,
    start_worker,
    stop_process,
    wait_for,
    write,
)

pytestmark = [pytest.mark.worker, pytest.mark.parametrize("backend", ["postgresql"])]
ITEMS = 16


@pytest.fixture
def own_redis_env(app_env, own_redis, monkeypatch):  # noqa: ANN001, ANN201
    env = dict(app_env.env, TANDEM_BROKER_URL=own_redis.url(0),
               TANDEM_JUDGE_CLAIM_STALE_S="3", TANDEM_BROKER_VISIBILITY_TIMEOUT_S="60",
               JUDGE_KEY="sk-redis-restart")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    return env


def queued_messages(own_redis) -> int:  # noqa: ANN001
    import redis

    client = redis.Redis(port=own_redis.port)
    try:
        return int(client.llen("judge"))
    finally:
        client.close()


def test_a_judge_run_survives_a_broker_restart(own_redis_env, own_redis, tmp_path) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(ITEMS))
    with FakeOpenAI() as fake:
        fake.delay = 0.25  # a batch of two items (both orders each) takes about a second
        configure(project, fake)
        worker = start_worker(own_redis_env, queues="judge", log=tmp_path / "worker.log")
        try:
            run = write(service.start_run, project=project, user=admin, data=RunIn())
            wait_for(lambda: run_state(run.id)[1] >= 2, timeout=60, what="the first labels")
            wait_for(lambda: queued_messages(own_redis) > 0, timeout=10,
                     what="batches waiting in the broker")
            labels_at_restart = run_state(run.id)[1]
            assert labels_at_restart < ITEMS, "the run finished before the restart"
            own_redis.restart(down_s=1)
            restarted = time.monotonic()
            assert queued_messages(own_redis) == 0  # the queued batches are gone
            wait_for(lambda: run_state(run.id)[0] == "succeeded", timeout=120,
                     what="the run to finish after the broker restart")
            finished_s = time.monotonic() - restarted
            assert worker.poll() is None, "the worker died instead of reconnecting"
        finally:
            stop_process(worker)
        calls = len(fake.requests)
    with session_scope() as db:
        progress = service.progress(db, run=db.get(JudgeRun, run.id))
        per_item = db.execute(select(AiLabel.item_id, func.count())
                              .where(AiLabel.run_id == run.id)
                              .group_by(AiLabel.item_id)).all()
    print(f"\n{labels_at_restart} of {ITEMS} items judged at the restart; the run finished "
          f"{finished_s:.1f} s after it; {calls} judge calls for {2 * ITEMS} questions")
    assert progress.counts == {"pending": 0, "running": 0, "done": ITEMS, "failed": 0}
    assert len(per_item) == ITEMS and {n for _, n in per_item} == {1}
    log = (tmp_path / "worker.log").read_text()
    assert "sk-redis-restart" not in log
