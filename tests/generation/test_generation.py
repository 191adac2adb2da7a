"""Generation runs: a model writes k responses to each prompt as the next round's items."""

from __future__ import annotations

import pytest

from app.auth.service import create_api_token
from app.generation.service import run_generation
from app.models import Item, ModelCheckpoint, Response
from tests.judging.fake_openai import FakeOpenAI, completion
from tests.support import label_all, make_project, make_user, sample_items, write

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def project_and_token():  # noqa: ANN201
    admin = make_user("admin@example.org", admin=True)
    items = sample_items(3)
    items.append({"external_id": "dup", "prompt": "Question number 0?",
                  "responses": ["x", "y"]})  # the same prompt again: answered once
    items.append({"external_id": "chat", "prompt": CHAT, "responses": ["Hello.", "Hey"]})
    project = make_project(admin, items=items)
    label_all(project, admin, lambda t: {"choice": "a", "strength": 1})
    token = write(create_api_token, user=admin, project_id=project.id, name="ml",
                  scopes=["train", "read"]).secret
    return admin, project, {"Authorization": f"Bearer {token}"}


def test_a_checkpoint_writes_the_next_round(client, db, tiny_models) -> None:
    admin, project, headers = project_and_token()
    checkpoint = write(lambda db: _register(db, project.id, str(tiny_models["causal-lm"])))
    made = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers, json={
        "k": 3, "model": f"checkpoint:{checkpoint}",
        "sampling": {"temperature": 0.7, "max_new_tokens": 6, "seed": 1}})
    assert made.status_code == 202, made.text
    run = made.json()
    assert run["round"] == 2 and run["status"] == "queued" and run["checkpoint_id"] == checkpoint
    run_generation(run_id=run["id"])  # the Celery task's body, run here
    got = client.get(f"/api/v1/projects/{project.id}/generation-runs/{run['id']}",
                     headers=headers).json()
    assert got["status"] == "succeeded" and got["done"] == got["total"] == 4
    db.rollback()
    new = db.query(Item).filter_by(project_id=project.id, round=2).order_by(Item.id).all()
    assert [i.external_id for i in new] == ["item-0~r2", "item-1~r2", "item-2~r2", "chat~r2"]
    assert new[3].prompt == CHAT and new[0].meta["generated_from"] == "item-0"
    responses = db.query(Response).filter(Response.item_id.in_([i.id for i in new])).all()
    assert len(responses) == 12
    assert {r.source for r in responses} == {"generated"}
    assert {r.model_name for r in responses} == {f"checkpoint:{checkpoint}"}
    assert {r.generation_run_id for r in responses} == {run["id"]}
    # The new round is labeled like any other; the rounds overview ties it together.
    rounds = client.get(f"/api/v1/projects/{project.id}/rounds", headers=headers).json()
    assert rounds[0] == {"round": 1, "items": 5, "labels": 5, "generation_run": None,
                         "snapshots": [], "checkpoints": []}
    assert rounds[1]["round"] == 2 and rounds[1]["items"] == 4
    assert rounds[1]["generation_run"] == run["id"] and rounds[1]["labels"] == 0

    # Label round 2, snapshot it alone, and the overview shows which round it holds.
    label_all(project, admin, lambda t: {"choice": "b", "strength": 2}, key="r2")
    from app.exports.schemas import SnapshotIn
    from app.exports.snapshots import build_snapshot, create_snapshot

    snap = write(create_snapshot, project=project, user=admin, enqueue=False,
                 spec=SnapshotIn(filters={"round": 2}))
    build_snapshot(snapshot_id=snap.id)
    db.rollback()
    from app.models import ExportSnapshot

    built = db.get(ExportSnapshot, snap.id)
    assert built.rows == 4 and built.manifest["filters"]["round"] == 2
    rounds = client.get(f"/api/v1/projects/{project.id}/rounds", headers=headers).json()
    assert rounds[0]["snapshots"] == [] and rounds[1]["snapshots"] == [snap.id]
    assert rounds[1]["labels"] == 4


def _register(db, project_id: int, uri: str) -> int:  # noqa: ANN001
    checkpoint = ModelCheckpoint(project_id=project_id, kind="dpo", name="tiny", uri=uri,
                                 base_model="tiny")
    db.add(checkpoint)
    db.flush()
    return checkpoint.id


def test_an_openai_compatible_generator_and_a_failed_run(client, db) -> None:
    _, project, headers = project_and_token()
    with FakeOpenAI() as fake:
        fake.default = ("json", completion("A generated answer."))
        made = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                           json={"k": 2, "provider": "openai", "model": "gen-1",
                                 "base_url": fake.base_url, "sampling": {"seed": 5}}).json()
        run_generation(run_id=made["id"])
        assert {r["seed"] for r in fake.requests} == {5, 6}  # recorded sampling, per call
        assert all(r["model"] == "gen-1" for r in fake.requests)
        # A server that breaks halfway: the run fails and leaves no half-made round.
        fake.default = ("status", 400, {}, "bad request")
        failed = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                             json={"k": 2, "provider": "openai", "model": "gen-1",
                                   "base_url": fake.base_url}).json()
        with pytest.raises(Exception):  # noqa: B017  (the task re-raises for the worker's log)
            run_generation(run_id=failed["id"])
    got = client.get(f"/api/v1/projects/{project.id}/generation-runs/{failed['id']}",
                     headers=headers).json()
    assert got["status"] == "failed" and "generation failed" in got["error"]
    db.rollback()
    assert db.query(Item).filter_by(project_id=project.id, round=3).count() == 0
    assert db.query(Item).filter_by(project_id=project.id, round=2).count() == 4


def test_bad_generation_requests(client) -> None:
    _, project, headers = project_and_token()
    bad = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                      json={"k": 1})
    assert bad.status_code == 422
    bad = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                      json={"provider": "openai", "model": "x"})
    assert bad.status_code == 400 and "base URL" in bad.text
    bad = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                      json={"model": "checkpoint:99"})
    assert bad.status_code == 404


def test_a_redelivered_generation_leaves_a_live_run_alone(client, db) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.models import GenerationRun
    from app.models.types import utcnow

    _, project, headers = project_and_token()
    with FakeOpenAI() as fake:
        fake.default = ("json", completion("Generated."))
        made = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                           json={"k": 2, "provider": "openai", "model": "g",
                                 "base_url": fake.base_url}).json()
        second = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                             json={"k": 2, "provider": "openai", "model": "g",
                                   "base_url": fake.base_url}).json()
        assert (made["round"], second["round"]) == (2, 3)  # started together: own rounds

        def mark(**values) -> None:  # noqa: ANN003
            write(lambda db: db.execute(update(GenerationRun).where(
                GenerationRun.id == made["id"]).values(**values)))

        mark(status="running", owner="other-copy", heartbeat_at=utcnow())
        # A live copy is at work: this one does nothing, but asks to look again later
        # (that copy's worker may have been killed).
        assert run_generation(run_id=made["id"]) is False
        assert fake.requests == []
        mark(heartbeat_at=utcnow() - timedelta(hours=1))
        assert run_generation(run_id=made["id"]) is True
        assert run_generation(run_id=made["id"]) is True  # finished: nothing to look at
    got = client.get(f"/api/v1/projects/{project.id}/generation-runs/{made['id']}",
                     headers=headers).json()
    assert got["status"] == "succeeded"
    db.rollback()
    assert db.query(Item).filter_by(project_id=project.id, round=2, ready=True).count() == 4


def test_generated_items_are_found_by_their_sources_tags(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    items = sample_items(4)
    for i, item in enumerate(items):
        item["metadata"] = {"tags": "math, easy"} if i % 2 else {"tags": ["code"], "tag": "x"}
    project = make_project(admin, items=items)
    token = write(create_api_token, user=admin, project_id=project.id, name="ml",
                  scopes=["train", "read"]).secret
    headers = {"Authorization": f"Bearer {token}"}
    with FakeOpenAI() as fake:
        fake.default = ("json", completion("A generated answer."))
        made = client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=headers,
                           json={"k": 2, "provider": "openai", "model": "gen-1",
                                 "base_url": fake.base_url}).json()
        run_generation(run_id=made["id"])

    def listed(**params: str) -> list[str]:
        r = client.get(f"/api/v1/projects/{project.id}/items", headers=headers, params=params)
        assert r.status_code == 200, r.text
        return [i["external_id"] for i in r.json()["items"]]

    assert listed(tag="math") == ["item-1", "item-3", "item-1~r2", "item-3~r2"]
    assert listed(tag="x", round="2") == ["item-0~r2", "item-2~r2"]
    assert listed(tag="easy", limit="1") == ["item-1"]
