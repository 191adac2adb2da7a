"""Exports load with `datasets` and hold exactly the pairs the labels state."""

from __future__ import annotations

import json

from app.auth.service import create_api_token
from app.labeling import service
from app.labeling.schemas import LabelIn
from app.models import Response
from tests.support import login, make_project, make_user, write

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]


def label_all(project, user, decide) -> None:  # noqa: ANN001
    """Take every item in the queue and label it with ``decide(task) -> LabelIn fields``."""
    n = 0
    while True:
        task = write(service.next_task, project=project, user=user)
        if task is None:
            return
        n += 1
        write(service.submit_label, project=project, user=user,
              data=LabelIn(item_id=task.item.id, idempotency_key=f"key-{user.id}-{n:04d}",
                           **decide(task)))


def load(path) -> list[dict]:  # noqa: ANN001
    import datasets

    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    return [dict(r) for r in ds]


def test_pairwise_export_loads_with_datasets_and_leaves_out_ties(client, tmp_path) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=[
        {"external_id": "q1", "prompt": "Capital of France?", "responses": ["Paris", "Lyon"]},
        {"external_id": "q2", "prompt": CHAT, "responses": ["4", "5"]},
        {"external_id": "q3", "prompt": "Hi", "responses": ["Hello", "Hey"]},
    ])
    choices = {"q1": {"choice": "a", "strength": 2}, "q2": {"choice": "b", "strength": 1},
               "q3": {"choice": "tie"}}
    label_all(project, admin, lambda t: choices[t.item.external_id])
    token = write(create_api_token, user=admin, project_id=project.id, name="train",
                  scopes=["export"]).secret
    response = client.get(f"/api/v1/projects/{project.id}/export?format=standard",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    path = tmp_path / "standard.jsonl"
    path.write_bytes(response.content)
    rows = load(path)
    assert rows == [
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
        {"prompt": "system: Be brief.\n\nuser: 2+2?", "chosen": "5", "rejected": "4"},
    ]
    conv = client.get(f"/api/v1/projects/{project.id}/export?format=conversational",
                      headers={"Authorization": f"Bearer {token}"})
    path = tmp_path / "conversational.jsonl"
    path.write_bytes(conv.content)
    rows = load(path)
    assert rows[1] == {"prompt": CHAT, "chosen": [{"role": "assistant", "content": "5"}],
                       "rejected": [{"role": "assistant", "content": "4"}]}
    assert rows[0]["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    # The admin's page counts the tie that was left out.
    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}/export").text
    assert '<dd id="pair-count">2</dd>' in page and "Ties left out</dt><dd>1<" in page


def test_ranking_expands_to_every_ordered_pair(client, tmp_path) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="ranking", items=[
        {"external_id": "r", "prompt": "Rank", "responses": ["w", "x", "y", "z"]}])

    def best_last_first(task):  # noqa: ANN001, ANN202
        return {"ranking": [r.id for r in reversed(task.responses)]}

    label_all(project, admin, best_last_first)
    login(client, "admin@example.org")
    path = tmp_path / "ranking.jsonl"
    path.write_bytes(client.get(f"/projects/{project.id}/export.jsonl").content)
    pairs = {(r["chosen"], r["rejected"]) for r in load(path)}
    order = ["z", "y", "x", "w"]
    assert pairs == {(order[i], order[j]) for i in range(4) for j in range(i + 1, 4)}


def test_human_edit_is_chosen_over_its_original(client, db, tmp_path) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="rate_and_edit", items=[
        {"external_id": "e", "prompt": "Fix my email", "responses": ["hey u", "Dear team,"]}])

    def rate_and_edit(task):  # noqa: ANN001, ANN202
        first, second = task.responses
        return {"ratings": {first.id: 2, second.id: 6}, "edit_response_id": first.id,
                "edit_text": "Hello team,"}

    label_all(project, admin, rate_and_edit)
    edited = db.query(Response).filter(Response.source == "human_edit").one()
    assert edited.text == "Hello team," and edited.parent_response_id is not None
    login(client, "admin@example.org")
    lines = client.get(f"/projects/{project.id}/export.jsonl").text.splitlines()
    rows = [json.loads(line) for line in lines]
    assert {(r["chosen"], r["rejected"]) for r in rows} == {
        ("Hello team,", "hey u"), ("Dear team,", "hey u")}


def test_export_needs_a_token_with_the_export_scope(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    assert client.get(f"/api/v1/projects/{project.id}/export").status_code == 401
    read_only = write(create_api_token, user=admin, project_id=project.id, name="r",
                      scopes=["read"]).secret
    assert client.get(f"/api/v1/projects/{project.id}/export",
                      headers={"Authorization": f"Bearer {read_only}"}).status_code == 403
