"""Tandem's full-fidelity format: everything about an item, and back again."""

from __future__ import annotations

import json

from app.auth.service import create_api_token
from app.consensus import service as consensus
from app.exports.snapshots import build_snapshot
from app.judging import service as judging
from app.judging.prompts import DEFAULT_TEMPLATE
from app.judging.schemas import JudgeConfigIn, RunIn
from app.models import AiLabel, HumanLabel, Item, User
from app.reviewing.service import submit_review
from tests.judging.fake_openai import FakeOpenAI, completion
from tests.judging.test_judge_runs import run_inline
from tests.support import label_all, make_project, make_user, write

CHAT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say hi."}]


def items() -> list[dict]:
    out = [{"external_id": f"t{i}", "prompt": CHAT if i == 0 else f"Task {i}",
            "responses": [{"text": f"First {i}", "model": "m1"}, f"Second {i}"],
            "metadata": {"tags": ["x"], "n": i}} for i in range(5)]
    out[4]["gold"] = 1  # an admin's known answer: the second response is best
    return out


def export_tandem(client, headers, project_id: int) -> list[dict]:  # noqa: ANN001
    made = client.post(f"/api/v1/projects/{project_id}/snapshots",
                       json={"format": "tandem"}, headers=headers).json()
    build_snapshot(snapshot_id=made["id"])
    body = client.get(f"/api/v1/projects/{project_id}/snapshots/{made['id']}/files/train.jsonl",
                      headers=headers)
    assert body.status_code == 200, body.text
    return [json.loads(line) for line in body.text.splitlines()]


def test_round_trip_through_the_full_fidelity_format_loses_nothing(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("ann@example.org")
    source = make_project(admin, k=2, items=items(), members={"ann@example.org": "labeler"})
    ann = db.query(User).filter_by(email="ann@example.org").one()
    # Admin prefers A clearly everywhere; Ann prefers B on t1 (a conflict), ties on t2.
    label_all(source, admin, lambda t: {"choice": "a", "strength": 2, "rationale": "clearer"})
    label_all(source, ann, lambda t: {"t1": {"choice": "b", "strength": 1},
                                      "t2": {"choice": "tie"}}.get(
        t.item.external_id, {"choice": "a", "strength": 1}))
    consensus.refresh(source.id)
    t1 = db.query(Item).filter_by(project_id=source.id, external_id="t1").one()
    write(consensus.adjudicate, project=source, user=admin, item_id=t1.id,
          idempotency_key="adj-1", ranking=None, comment="both fine")

    # The AI judge labels t3 (review sample); the reviewer edits its choice.
    with FakeOpenAI() as fake:
        fake.default = None
        fake.script.append(("json", completion("A", logprobs={"A": 0.9, "B": 0.1})))
        fake.script.append(("json", completion("B", logprobs={"B": 0.9, "A": 0.1})))
        write(judging.update_config, project=source, data=JudgeConfigIn(
            provider="openai", model="judge-1", base_url=fake.base_url,
            template=DEFAULT_TEMPLATE, batch_size=1, max_concurrency=1, judge_rules=False,
            review_fraction=1.0))
        t3 = db.query(Item).filter_by(project_id=source.id, external_id="t3").one()
        run = write(judging.start_run, project=source, user=admin,
                    data=RunIn(external_id_prefix="t3"))
        run_inline(run.id)
    db.rollback()
    ai = db.query(AiLabel).filter_by(item_id=t3.id).one()
    write(submit_review, project=source, user=admin, ai_label_id=ai.id, action="edit",
          idempotency_key="rev-1", edit_text="First 3, but warmer.")
    del ann

    token = write(create_api_token, user=admin, project_id=source.id, name="t",
                  scopes=["export", "import"]).secret
    headers = {"Authorization": f"Bearer {token}"}
    exported = export_tandem(client, headers, source.id)
    assert [r["external_id"] for r in exported] == ["t0", "t1", "t2", "t3", "t4"]
    by_id = {r["external_id"]: r for r in exported}
    assert by_id["t0"]["prompt"] == CHAT and len(by_id["t0"]["labels"]) == 2
    assert by_id["t1"]["prompt"] == "Task 1" and by_id["t1"]["metadata"] == {"tags": ["x"], "n": 1}
    assert by_id["t1"]["adjudications"][0]["comment"] == "both fine"
    assert by_id["t1"]["consensus"]["source"] == "adjudicated"
    assert by_id["t3"]["ai_labels"][0]["reviews"][0]["action"] == "edit"
    assert by_id["t3"]["responses"][2]["parent"] == 0
    assert by_id["t4"]["gold"] == [1, 0] and by_id["t4"]["consensus"]["source"] == "gold"

    # Into a fresh project, through the import API, and out again: the same records.
    target = make_project(admin, k=2, name="Copy")
    token2 = write(create_api_token, user=admin, project_id=target.id, name="t",
                   scopes=["export", "import"]).secret
    headers2 = {"Authorization": f"Bearer {token2}"}
    response = client.post(f"/api/v1/projects/{target.id}/items", json={"items": exported},
                           headers=headers2)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 5
    assert export_tandem(client, headers2, target.id) == exported
    db.rollback()
    labels = db.query(HumanLabel).filter_by(project_id=source.id).count()
    assert labels >= 8 and db.query(HumanLabel).filter_by(project_id=target.id).count() == labels


def test_a_bad_full_fidelity_line_is_reported_and_nothing_is_imported(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["import"]).secret
    good = {"tandem": 1, "external_id": "g", "prompt": "P", "responses": ["a", "b"],
            "labels": [{"labeler": "x@example.org", "choice": "a", "strength": 1, "a": 0,
                        "b": 1}]}
    bad_lines = [
        {**good, "external_id": "b1", "labels": ["not an object"]},
        {**good, "external_id": "b2", "labels": [{"labeler": "x@example.org",
                                                  "created_at": "yesterday"}]},
        {**good, "external_id": "b3", "ai_labels": [{"reviews": [{"action": "approve"}]}]},
        {**good, "external_id": "b4", "labels": [{"labeler": "x@example.org", "ranking": [0, 7]}]},
        {**good, "external_id": "b5", "labels": [good["labels"][0], good["labels"][0]]},
    ]
    response = client.post(f"/api/v1/projects/{project.id}/items",
                           headers={"Authorization": f"Bearer {token}"},
                           json={"items": [good, *bad_lines]})
    assert response.status_code == 422, response.text
    errors = {e["line"]: e["message"] for e in response.json()["errors"]}
    assert set(errors) == {2, 3, 4, 5, 6}
    assert "labels.0" in errors[2] and "created_at" in errors[3]
    assert "ranking" in errors[4] and "names response 7" in errors[5]
    assert "twice: x@example.org" in errors[6]
    assert response.json()["created"] == 0
