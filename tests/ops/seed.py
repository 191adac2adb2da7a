"""A project with something in (nearly) every table, made through the app's own services:
what the backup and migration tests carry through a dump or a schema walk."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.core.db import session_scope
from app.models import AiLabel, HumanLabel, Item, User
from tests.judging.fake_openai import FakeOpenAI, completion
from tests.support import (
    label_all,
    make_project,
    make_user,
    reset_caches,
    sample_items,
    wait_for,
    write,
)

LABELERS = ("ann@example.org", "bob@example.org")


@dataclass
class Seeded:
    project_id: int
    admin_id: int
    snapshot_id: int


def tagged(items: list[dict]) -> list[dict]:
    """The items with tags in their metadata, as a list or a comma string in turn."""
    for n, item in enumerate(items):
        item["metadata"] = ({"tags": ["seed", f"n{n}"]} if n % 2 == 0
                            else {"tags": "seed, odd", "tag": "x"})
    return items


def seed_everything(monkeypatch, *, items: int = 6, client=None) -> Seeded:  # noqa: ANN001
    """Users, a project with rules, items (some from an import job), labels from two
    labelers, AI labels and a review, consensus, an export snapshot, a finished training run
    with its checkpoint and metrics, a generation run, an API token, and (given a test
    client) a login session."""
    from app.auth.service import create_api_token
    from app.consensus import service as consensus
    from app.exports import snapshots
    from app.exports.schemas import SnapshotIn
    from app.generation.schemas import GenerationIn
    from app.generation.service import start_generation
    from app.items.service import import_file, run_import_job
    from app.judging import service as judging
    from app.judging.prompts import DEFAULT_TEMPLATE
    from app.judging.schemas import JudgeConfigIn, RunIn
    from app.models import Project
    from app.reviewing.service import submit_review
    from app.training import service as training
    from app.training.schemas import CheckpointIn, ClaimIn, FinishIn, MetricsIn, TrainingRunIn
    from tests.judging.test_judge_runs import run_inline
    from tests.support import login

    admin = make_user("admin@example.org", admin=True)
    for email in (*LABELERS, "rev@example.org"):
        make_user(email)
    project = make_project(
        admin, k=2, items=tagged(sample_items(items)), rules=[("honest", "Say only what is true.")],
        members={LABELERS[0]: "labeler", LABELERS[1]: "labeler", "rev@example.org": "reviewer"})

    def by_job(db):  # noqa: ANN001, ANN202
        # Three more items through an import job (a stored file), run here as a worker would.
        import json

        data = "\n".join(json.dumps(i) for i in tagged(sample_items(3, start=items))).encode()
        return import_file(db, project=db.get(Project, project.id), user=db.get(User, admin.id),
                           data=data, filename="more.jsonl", file_format="jsonl")

    with monkeypatch.context() as m:  # a low limit for this one file, so it goes to a job
        m.setenv("TANDEM_IMPORT_SYNC_LIMIT", "2")
        reset_caches()
        report = write(by_job)
    reset_caches()
    assert report.job_id is not None
    run_import_job(job_id=report.job_id)

    with session_scope() as db:
        users = {u.email: u for u in db.scalars(select(User))}
    label_all(project, users[LABELERS[0]], lambda t: {"choice": "a", "strength": 2}, key="ann")
    label_all(project, users[LABELERS[1]],
              lambda t: {"choice": "b" if t.item.id % 3 == 0 else "a", "strength": 1,
                         "rationale": f"bob on {t.item.external_id}"}, key="bob")

    with FakeOpenAI() as fake:
        fake.default = ("json", completion("A", logprobs={"A": 0.9, "B": 0.1}))
        write(judging.update_config, project=project, data=JudgeConfigIn(
            provider="openai", model="judge-1", base_url=fake.base_url,
            template=DEFAULT_TEMPLATE, batch_size=2, max_concurrency=1, judge_rules=False,
            review_fraction=1.0))
        run_inline(write(judging.start_run, project=project, user=admin, data=RunIn()).id)
    with session_scope() as db:
        ai_label_id = db.scalar(select(AiLabel.id).order_by(AiLabel.id))
    write(lambda db: submit_review(db, project=db.get(Project, project.id),
                                   user=db.get(User, users["rev@example.org"].id),
                                   ai_label_id=ai_label_id, action="approve",
                                   idempotency_key="review-0001"))
    consensus.refresh(project.id)
    with monkeypatch.context() as m:  # counted as a big project: its recount is stored
        from app.core.config import get_settings
        from app.labeling import progress_cache
        from app.labeling.service import project_progress

        m.setattr(get_settings(), "progress_recount_above_items", 1)
        write(lambda db: project_progress(db, project=db.get(Project, project.id)))
        wait_for(lambda: not progress_cache.refreshing(), timeout=10, what="the recount")

    snapshot_id = write(lambda db: snapshots.create_snapshot(
        db, project=db.get(Project, project.id), user=db.get(User, admin.id),
        spec=SnapshotIn(format="standard"), enqueue=False).id)
    snapshots.build_snapshot(snapshot_id=snapshot_id)

    run = write(lambda db: training.start_run(
        db, project=db.get(Project, project.id), user=db.get(User, admin.id),
        data=TrainingRunIn(snapshot_id=snapshot_id, method="dpo", base_model="smollm2")))
    token = run.api_token_id
    write(training.claim, run_id=run.id, token_id=token, data=ClaimIn(worker="w1", attempt=1))
    write(training.report, run_id=run.id, token_id=token,
          data=MetricsIn(attempt=1, points=[{"step": 1, "loss": 0.69, "max_steps": 2}],
                         log=["step 1"]))
    write(training.finish, run_id=run.id, token_id=token, data=FinishIn(
        attempt=1, status="succeeded", checkpoint=CheckpointIn(uri="/ckpt/run-1",
                                                               metrics={"loss": 0.5})))
    write(lambda db: start_generation(db, project=db.get(Project, project.id),
                                      user=db.get(User, admin.id), data=GenerationIn(k=2)))
    write(lambda db: create_api_token(db, user=db.get(User, admin.id), project_id=project.id,
                                      name="ci", scopes=["export", "read"]))
    if client is not None:
        login(client, LABELERS[0])
    return Seeded(project_id=project.id, admin_id=admin.id, snapshot_id=snapshot_id)


def label_set(url: str | None = None) -> set[tuple]:
    """Every human label as (item external id, labeler email, what they said)."""
    from sqlalchemy import create_engine

    from app.core.db import get_engine

    engine = create_engine(url) if url else get_engine()
    query = (select(Item.external_id, User.email, HumanLabel.choice, HumanLabel.strength,
                    HumanLabel.rationale, HumanLabel.idempotency_key)
             .join(Item, Item.id == HumanLabel.item_id).join(User, User.id == HumanLabel.user_id))
    try:
        with engine.connect() as conn:
            return {tuple(row) for row in conn.execute(query)}
    finally:
        if url:
            engine.dispose()
