"""Judge runs: one AI label per item and run, cancel and resume, the cache, routing into the
human queue, secrets kept out of storage, and a real worker with the real model on Redis."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, inspect, select, text

from app.auth.service import create_api_token
from app.core.db import session_scope
from app.judging import service, work
from app.judging.schemas import JudgeConfigIn, RunIn
from app.labeling.service import next_task
from app.models import AiLabel, Item, JudgeRun
from tests.judging.fake_openai import FakeOpenAI, completion
from tests.support import (
    make_project,
    make_user,
    sample_items,
    start_worker,
    stop_process,
    write,
)

SECRET = "sk-live-do-not-leak-4242"


def openai_config(fake: FakeOpenAI, **kw) -> JudgeConfigIn:  # noqa: ANN003
    from app.judging.prompts import DEFAULT_TEMPLATE

    options = {"batch_size": 2, "judge_rules": False, "review_fraction": 0.0, **kw}
    return JudgeConfigIn(provider="openai", model="judge-1", base_url=fake.base_url,
                         api_key_env="JUDGE_KEY", template=DEFAULT_TEMPLATE, **options)


def run_inline(run_id: int) -> None:
    """What the worker does, in this process: dispatch, then every batch."""
    for batch in work.dispatch(run_id=run_id):
        work.judge_batch(run_id=run_id, item_ids=batch)


def count(db, model, **where) -> int:  # noqa: ANN001, ANN003
    db.rollback()
    query = select(func.count()).select_from(model)
    for k, v in where.items():
        query = query.where(getattr(model, k) == v)
    return db.scalar(query)


@pytest.fixture
def fake(app_env, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    with FakeOpenAI() as server:
        # A consistent, confident judge: A when A is first... and B when B is first.
        server.default = ("json", completion("A", logprobs={"A": 0.9, "B": 0.1}))
        yield server


def test_a_run_labels_every_item_once_and_routes_them(fake, db) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(5))
    write(service.update_config, project=project, data=openai_config(fake))
    run = write(service.start_run, project=project, user=admin, data=RunIn())
    run_inline(run.id)
    run_inline(run.id)  # a task delivered twice does nothing more
    assert count(db, AiLabel, run_id=run.id) == 5
    assert db.get(JudgeRun, run.id).status == "succeeded"
    # "A" in both orders means A first, then B first: the orders disagree -> humans first.
    labels = db.scalars(select(AiLabel).where(AiLabel.run_id == run.id)).all()
    assert {(lb.consistent, lb.route) for lb in labels} == {(False, "human")}
    assert count(db, Item, queue_rank=0) == 5


def test_consistent_confident_labels_leave_the_human_queue(fake, db) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    lee = make_user("lee@example.org")
    project = make_project(admin, items=sample_items(2),
                           members={"lee@example.org": "labeler"})
    # Answers alternate A, B, A, B: both orders prefer the same response, confidently.
    fake.default = None
    for _ in range(2):
        fake.script.append(("json", completion("A", logprobs={"A": 0.95, "B": 0.05})))
        fake.script.append(("json", completion("B", logprobs={"B": 0.95, "A": 0.05})))
    write(service.update_config, project=project,
          data=openai_config(fake, batch_size=1, max_concurrency=1))
    run = write(service.start_run, project=project, user=admin, data=RunIn())
    run_inline(run.id)
    labels = db.scalars(select(AiLabel).where(AiLabel.run_id == run.id)).all()
    assert [(lb.consistent, lb.route, lb.choice) for lb in labels] == [
        (True, "accepted", "a"), (True, "accepted", "a")]
    assert labels[0].preference == pytest.approx(0.95)
    assert write(next_task, project=project, user=lee) is None  # the AI labeled them


def test_cancel_stops_a_run_and_resume_finishes_it(fake, db) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(6))
    write(service.update_config, project=project, data=openai_config(fake))
    run = write(service.start_run, project=project, user=admin, data=RunIn())
    batches = work.dispatch(run_id=run.id)
    work.judge_batch(run_id=run.id, item_ids=batches[0])
    write(lambda db: service.cancel_run(db, run=db.get(JudgeRun, run.id)))
    for batch in batches[1:]:
        work.judge_batch(run_id=run.id, item_ids=batch)  # a cancelled run does nothing
    assert count(db, AiLabel, run_id=run.id) == 2
    write(lambda db: service.resume_run(db, run=db.get(JudgeRun, run.id)))
    run_inline(run.id)
    assert count(db, AiLabel, run_id=run.id) == 6
    assert db.get(JudgeRun, run.id).status == "succeeded"


def test_identical_calls_are_served_from_the_cache(fake, db) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(3))
    write(service.update_config, project=project, data=openai_config(fake))
    first = write(service.start_run, project=project, user=admin, data=RunIn())
    run_inline(first.id)
    calls = len(fake.requests)
    assert calls == 6  # 3 items, both orders
    second = write(service.start_run, project=project, user=admin, data=RunIn())
    run_inline(second.id)
    assert len(fake.requests) == calls
    assert count(db, AiLabel, run_id=second.id) == 3


def test_an_unreadable_answer_fails_the_item_with_its_reason(fake, db) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(2))
    write(service.update_config, project=project, data=openai_config(fake, batch_size=1))
    fake.script.append(("json", completion("Hmm", logprobs={"Hmm": 0.9, "Well": 0.1})))
    run = write(service.start_run, project=project, user=admin, data=RunIn())
    run_inline(run.id)
    progress = service.progress(db, run=db.get(JudgeRun, run.id))
    assert progress.counts["failed"] == 1 and progress.counts["done"] == 1
    assert "answered 'Hmm', not A or B" in progress.failures[0].error
    assert progress.run.status == "succeeded"


def test_the_api_key_is_never_stored(fake, db, app_env) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(2))
    write(service.update_config, project=project, data=openai_config(fake))
    run_inline(write(service.start_run, project=project, user=admin, data=RunIn()).id)
    assert fake.headers[0]["authorization"] == f"Bearer {SECRET}"
    db.rollback()
    for table in inspect(db.get_bind()).get_table_names():
        for row in db.execute(text(f'SELECT * FROM "{table}"')):
            assert SECRET not in repr(row), table
    with pytest.raises(ValueError, match="NAME of the environment variable"):
        JudgeConfigIn(**{**openai_config(fake).model_dump(), "api_key_env": SECRET})


@pytest.mark.worker
@pytest.mark.model
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_run_with_the_local_model_through_a_worker_on_redis(client, redis_broker,
                                                              tmp_path) -> None:
    env = redis_broker(OMP_NUM_THREADS="2")
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="ranking", items=sample_items(3, responses=3),
                           rules=[("polite", "Be polite")])
    token = write(create_api_token, user=admin, project_id=project.id, name="judge",
                  scopes=["judge"]).secret
    auth = {"Authorization": f"Bearer {token}"}
    worker = start_worker(env, queues="judge", log=tmp_path / "worker.log")
    try:
        started = client.post(f"/api/v1/projects/{project.id}/judge-runs", headers=auth,
                              json={"mode": "all"})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            body = client.get(f"/api/v1/projects/{project.id}/judge-runs/{run_id}",
                              headers=auth).json()
            if body["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        assert body["status"] == "succeeded", (body, (tmp_path / "worker.log").read_text()[-3000:])
    finally:
        stop_process(worker)
    assert body["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert body["tokens"]["prompt"] > 0
    with session_scope() as db:
        labels = db.scalars(select(AiLabel).where(AiLabel.run_id == run_id)).all()
    assert len(labels) == 3
    for label in labels:
        assert len(label.ranking) == 3 and len(label.pairs) == 3
        assert set(label.rule_verdicts) == {str(r) for r in label.ranking}
        assert all(0 <= p["p_a_first"] <= 1 for p in label.pairs)


def test_items_the_judge_was_unsure_of_come_first_in_the_human_queue(fake) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    lee = make_user("lee@example.org")
    project = make_project(admin, items=sample_items(4), members={"lee@example.org": "labeler"})
    write(service.update_config, project=project, data=openai_config(fake))
    # Judge only item-3: "A" in both orders is inconsistent, so it goes to humans first.
    run = write(service.start_run, project=project, user=admin,
                data=RunIn(external_id_prefix="item-3"))
    run_inline(run.id)
    first = write(next_task, project=project, user=lee)
    assert first.item.external_id == "item-3"
    second = write(next_task, project=project, user=lee)  # still leased: the same item
    assert second.item.external_id == "item-3"
