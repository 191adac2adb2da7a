"""Imports through the JSON API in batches, as a client loading a large dataset sends them:
every item once, whole and ready to label, and a body that is not an import refused."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select, text

from app.auth.service import create_api_token
from app.models import Item, Response
from tests.support import login, make_project, make_user, sample_items, wait_for, write

BIG = 2**70  # over 64 bits: JSON keeps it exact, and so must the import


class Api:
    """A client of the import API: an admin's token for each project it is given."""

    def __init__(self, client) -> None:  # noqa: ANN001
        self.client = client
        self.admin = make_user("admin@example.org", admin=True)

    def post(self, project_id: int, body: dict | bytes):  # noqa: ANN201
        token = write(create_api_token, user=self.admin, project_id=project_id,
                      name="batches", scopes=["import"]).secret
        headers = {"Authorization": f"Bearer {token}"}
        if isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            return self.client.post(f"/api/v1/projects/{project_id}/items", content=body,
                                    headers=headers)
        return self.client.post(f"/api/v1/projects/{project_id}/items", json=body,
                                headers=headers)


@pytest.fixture
def api(client) -> Api:  # noqa: ANN001
    return Api(client)


def rich_items(n: int, *, start: int = 0) -> list[dict]:
    """Items with chat prompts, unicode, nested metadata and extra fields, every 100th gold."""
    out = []
    for i in range(start, start + n):
        item = {"external_id": f"b-{i:05d}",
                "prompt": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": f"Question {i} — naïve? 😀"}]
                if i % 2 else f"Question {i}:\n\t\"quoted\" \\ back?",
                "responses": [{"text": f"Answer A to {i}.\n\n- a list", "model": "model-a"},
                              f"Answer B to {i}."],
                "metadata": {"topic": ["code", "math"][i % 2], "n": i, "big": BIG,
                             "nested": {"x": [1, 2.5, None, True]}},
                "source_url": f"https://example.org/{i}"}
        if i % 100 == 0:
            item["gold"] = 1
        out.append(item)
    return out


def test_batches_import_every_item_once_whole_and_ready_to_label(api: Api, db) -> None:
    project = make_project(api.admin, k=2)
    batches = [rich_items(700, start=s) for s in (0, 700, 1400)]
    reports = [api.post(project.id, {"items": b}) for b in batches]
    assert [(r.status_code, r.json()["created"], r.json()["unchanged"]) for r in reports] == [
        (200, 700, 0)] * 3
    # A batch sent again, and one half old and half new: only the new items are created.
    again = api.post(project.id, {"items": batches[1]}).json()
    assert (again["created"], again["unchanged"]) == (0, 700)
    mixed = api.post(project.id, {"items": rich_items(400, start=2000)}).json()
    assert (mixed["created"], mixed["unchanged"]) == (300, 100)

    db.rollback()
    items = list(db.scalars(select(Item).where(Item.project_id == project.id)
                            .order_by(Item.id)))
    assert [i.external_id for i in items] == [f"b-{i:05d}" for i in range(2400)]
    assert db.scalar(select(func.count()).select_from(Response)) == 2 * 2400
    sent = {i["external_id"]: i for i in rich_items(2400)}
    for item in items[:3] + items[-3:] + [items[1234]]:
        record = sent[item.external_id]
        assert item.prompt == record["prompt"]
        assert item.meta == {**record["metadata"], "source_url": record["source_url"]}
        assert item.meta["big"] == BIG and item.created_at.tzinfo is not None
        responses = list(db.scalars(select(Response).where(Response.item_id == item.id)
                                    .order_by(Response.position)))
        assert [(r.position, r.text, r.model_name, r.source) for r in responses] == [
            (0, record["responses"][0]["text"], "model-a", "imported"),
            (1, record["responses"][1], None, "imported")]
    # Ready for labelers: in the queue with no labels, but gold items (every 100th) not.
    gold = {i.external_id for i in items if i.is_gold}
    assert gold == {f"b-{i:05d}" for i in range(0, 2400, 100)}
    assert all(i.ready and i.label_count == 0 and i.queue_rank == 1 for i in items)
    assert all(i.in_queue is (i.external_id not in gold) for i in items)


def test_imported_batch_is_what_a_labeler_gets_next(api: Api) -> None:
    make_user("lab@example.org")
    project = make_project(api.admin, members={"lab@example.org": "labeler"})
    assert api.post(project.id, {"items": sample_items(3)}).json()["created"] == 3
    csrf = login(api.client, "lab@example.org")
    page = api.client.post(f"/projects/{project.id}/label/next", data={"csrf_token": csrf},
                             headers={"HX-Request": "true"})
    assert page.status_code == 200 and "Question number 0?" in page.text


@pytest.mark.parametrize(("body", "message"), [
    (b'{"items": [', "invalid JSON"),
    (b'{"items": [{"prompt": "x", "responses": ["a", "b"], "metadata": {"v": NaN}}]}',
     "invalid JSON: NaN is not a JSON number"),
    (b'{"items": [{"prompt": "caf\xe9"}]}', "not UTF-8"),
    (b'[{"prompt": "x", "responses": ["a", "b"]}]', "a list of items"),
    (b'{"items": {"prompt": "x"}}', "a list of items"),
    (b'{}', "a list of items"),
])
def test_a_body_that_is_not_an_import_is_refused_whole(api: Api, db, body: bytes,
                                                        message: str) -> None:
    project = make_project(api.admin)
    response = api.post(project.id, body)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Item)) == 0


@pytest.mark.parametrize(("where", "escape", "message"), [
    ("prompt", "\\ud800", "lone surrogate"),
    ("response", "\\udfff", "lone surrogate"),
    ("metadata key", "\\ud83d", "lone surrogate"),
    ("prompt", "\\u0000", "NUL character"),
])
def test_text_no_database_can_store_is_a_line_error(api: Api, db, where: str, escape: str,
                                                    message: str) -> None:
    """JSON lets an escape name half a UTF-16 pair or NUL; neither can be stored, so the
    line is reported and nothing of the body imported (it was a 500 on the insert)."""
    project = make_project(api.admin)
    bad = {"prompt": "Say hi", "responses": ["hi", "hello"]}
    line = json.dumps(bad)
    if where == "prompt":
        line = line.replace("Say hi", f"Say {escape} hi")
    elif where == "response":
        line = line.replace('"hello"', f'"hel{escape}lo"')
    else:
        line = line[:-1] + f', "metadata": {{"k{escape}": 1}}}}'
    good = json.dumps(sample_items(1)[0])
    body = f'{{"items": [{good}, {line}, {good.replace("item-0", "item-x")}]}}'.encode()
    response = api.post(project.id, body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["line"] for e in errors] == [2] and message in errors[0]["message"]
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Item)) == 0
    # The same good items import once the bad one is left out.
    fixed = f'{{"items": [{good}]}}'.encode()
    assert api.post(project.id, fixed).status_code == 200


def test_a_model_name_too_long_to_store_is_a_line_error(api: Api, db) -> None:
    project = make_project(api.admin)
    items = sample_items(3)
    items[1]["responses"][0]["model"] = "m" * 201
    response = api.post(project.id, {"items": items})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"line": 2, "message": "too large: response 1 'model' is over 200 characters"}]
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Item)) == 0


def test_two_imports_racing_over_the_same_items_never_duplicate_one(api: Api, backend,
                                                                      db) -> None:
    """The second import checks for existing items before the first commits. PostgreSQL:
    it waits on the first one's rows, then is refused whole (409, run it again); SQLite:
    it waits for the write lock, then finds the items there."""
    from app.core.db import session_scope
    from app.items import service
    from app.items.parsing import parse_records

    project = make_project(api.admin)
    first = sample_items(50)
    second = sample_items(60)  # the same 50, and 10 more
    answers = []
    with session_scope(write=True) as session:
        parsed = parse_records(first, limits=service.limits())
        assert service.insert_items(session, project_id=project.id, items=parsed.items) == (
            50, 0)
        racer = threading.Thread(target=lambda: answers.append(
            api.post(project.id, {"items": second})))
        racer.start()
        if backend == "postgresql":  # until it waits on the rows this transaction wrote
            wait_for(lambda: db.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
                     .scalar() > 0, timeout=60, what="the second import waiting")
        racer.join(timeout=1)
        assert racer.is_alive()  # it waits for this transaction
    racer.join(timeout=60)
    answer = answers[0]
    if backend == "postgresql":
        assert answer.status_code == 409 and "run this import again" in answer.json()["detail"]
        expected = 50
    else:
        assert answer.status_code == 200
        assert (answer.json()["created"], answer.json()["unchanged"]) == (10, 50)
        expected = 60
    db.rollback()
    ids = list(db.scalars(select(Item.external_id).where(Item.project_id == project.id)))
    assert len(ids) == len(set(ids)) == expected
