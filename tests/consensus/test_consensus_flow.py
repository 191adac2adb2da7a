"""Each item's final preference, through the real queue, database and pages."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from app.consensus import service as consensus
from app.models import ItemConsensus, LabelerReliability, Response
from tests.support import label_all, login, make_project, make_user, sample_items, write


def three_labelers(project_kwargs=None):  # noqa: ANN001, ANN201
    admin = make_user("admin@example.org", admin=True)
    for name in ("ann", "bob", "cy"):
        make_user(f"{name}@example.org")
    project = make_project(admin, k=3, items=sample_items(4), members={
        "ann@example.org": "labeler", "bob@example.org": "labeler",
        "cy@example.org": "labeler", "admin@example.org": "reviewer"},
        **(project_kwargs or {}))
    return admin, project


def users():  # noqa: ANN201
    from app.core.db import session_scope
    from app.models import User

    with session_scope() as db:
        return {u.email.split("@")[0]: u for u in db.query(User).all()}


def test_majority_conflict_and_adjudication_decide_each_item(client, db) -> None:
    admin, project = three_labelers()
    u = users()
    # item-0: all three prefer A; item-1: 2 of 3 prefer B; item-2: A, B, tie (conflict)
    votes = {"ann": ["a", "b", "a", "tie"], "bob": ["a", "b", "b", "tie"],
             "cy": ["a", "a", "tie", "a"]}
    for name, choices in votes.items():
        label_all(project, u[name], lambda t, c=choices: (
            {"choice": c[int(t.item.external_id.split("-")[1])], "strength": 2}
            if c[int(t.item.external_id.split("-")[1])] != "tie" else {"choice": "tie"}))
    assert consensus.refresh(project.id) == 4
    db.rollback()
    rows = {c.item_id: c for c in db.query(ItemConsensus).all()}
    by_ext = {ext: rows[i] for i, ext in db.execute(
        text("SELECT id, external_id FROM items")).all()}
    assert by_ext["item-0"].status == "decided" and by_ext["item-0"].agreement == 1.0
    assert by_ext["item-1"].status == "decided"
    assert by_ext["item-1"].agreement == pytest.approx(2 / 3)
    assert by_ext["item-1"].pairs[0][2] == pytest.approx(2 / 3, abs=1e-6)  # P(chosen better)
    assert by_ext["item-2"].status == "conflict"
    assert by_ext["item-3"].status == "tie"

    # The reviewer sees the conflict, with what each labeler said, and decides it.
    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}/adjudicate").text
    assert "1 to adjudicate" in page and "labelers disagree" in page
    assert "ann" in page and "bob" in page and "cy" in page
    form = dict(re.findall(r'name="(csrf_token|item_id|idempotency_key)" value="([^"]*)"', page))
    best_b = re.findall(r'name="ranking" value="([\d,]+)" data-adj-best-index="2"', page)[0]
    panel = client.post(f"/projects/{project.id}/adjudicate", data={**form, "ranking": best_b},
                        headers={"HX-Request": "true"}).text
    assert "Nothing to adjudicate" in panel
    db.rollback()
    decided = db.get(ItemConsensus, by_ext["item-2"].item_id)
    assert decided.status == "decided" and decided.source == "adjudicated"
    assert decided.ranking == [int(x) for x in best_b.split(",")]

    # The export takes the adjudicated item, leaves out the tie, and names the sources.
    lines = client.get(f"/projects/{project.id}/export.jsonl").text.splitlines()
    assert [json.loads(x)["chosen"] for x in lines] == [
        "Answer 0 to question 0.", "Answer 1 to question 1.", "Answer 1 to question 2."]
    assert client.get(f"/projects/{project.id}/export.jsonl?source=adjudicated"
                      ).text.count("\n") == 1


def test_a_new_label_makes_the_consensus_stale_and_it_is_recomputed(db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("bob@example.org")
    project = make_project(admin, k=2, items=sample_items(1),
                           members={"bob@example.org": "labeler"})
    label_all(project, admin, lambda t: {"choice": "a", "strength": 1})
    consensus.refresh(project.id)
    db.rollback()
    assert db.query(ItemConsensus).one().agreement is None
    label_all(project, users()["bob"], lambda t: {"choice": "b", "strength": 1})
    assert consensus.refresh(project.id) == 1
    db.rollback()
    row = db.query(ItemConsensus).one()
    assert row.status == "conflict" and row.agreement == 0.5 and row.human_labels == 2


def test_reliability_weighting_follows_the_labelers_who_agree(db) -> None:
    admin = make_user("admin@example.org", admin=True)
    for name in ("ann", "bob", "cy", "dee"):
        make_user(f"{name}@example.org")
    project = make_project(admin, k=4, items=sample_items(24), members={
        f"{n}@example.org": "labeler" for n in ("ann", "bob", "cy", "dee")})
    u = users()

    def truth(task):  # noqa: ANN001, ANN202
        return "a" if int(task.item.external_id.split("-")[1]) % 3 else "b"

    for name in ("ann", "bob"):
        label_all(project, u[name], lambda t: {"choice": truth(t), "strength": 2})
    # cy contradicts the careful two everywhere; dee agrees with them on items 0-11 only.
    label_all(project, u["cy"], lambda t: {"choice": "b" if truth(t) == "a" else "a",
                                           "strength": 2})
    label_all(project, u["dee"], lambda t: {"choice": truth(t) if int(
        t.item.external_id.split("-")[1]) < 12 else ("b" if truth(t) == "a" else "a"),
        "strength": 2})

    def set_weighting(db, **values):  # noqa: ANN001, ANN202
        from app.models import Project

        p = db.get(Project, project.id)
        for k, v in values.items():
            setattr(p, k, v)

    write(set_weighting, weighting="reliability", conflict_threshold=0.0)
    consensus.refresh(project.id)
    db.rollback()
    weights = {r.user_id: r.weight for r in db.query(LabelerReliability).all()}
    assert weights[u["ann"].id] > weights[u["dee"].id] > weights[u["cy"].id]
    # On items 12-23 it is 2 against 2; the weights side with ann and bob.
    rows = db.query(ItemConsensus).all()
    assert all(r.status == "decided" for r in rows)
    texts = {r.item_id: r.ranking[0] for r in rows}
    from app.models import Item, Response

    for item in db.query(Item).all():
        best = db.get(Response, texts[item.id])
        want = 1 if int(item.external_id.split("-")[1]) % 3 == 0 else 0
        assert best.position == want, item.external_id


def test_a_circle_of_rankings_is_shown_and_settled_by_a_typed_order(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    for name in ("ann", "bob"):
        make_user(f"{name}@example.org")
    project = make_project(admin, task_type="ranking", k=3, items=sample_items(1, responses=3),
                           members={"ann@example.org": "labeler", "bob@example.org": "labeler"})
    u = users()
    for name, order in (("admin", [0, 1, 2]), ("ann", [1, 2, 0]), ("bob", [2, 0, 1])):
        label_all(project, u[name], lambda t, o=order: {"ranking": [t.responses[i].id
                                                                    for i in o]})
    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}/adjudicate").text
    assert "labels rank in a circle" in page and "Circle: A &gt; B &gt; C &gt; A" in page
    form = dict(re.findall(r'name="(csrf_token|item_id|idempotency_key)" value="([^"]*)"', page))
    bad = client.post(f"/projects/{project.id}/adjudicate",
                      data={**form, "action": "order", "order": "C,Q"})
    assert bad.status_code == 400 and "A to C" in bad.text
    done = client.post(f"/projects/{project.id}/adjudicate",
                       data={**form, "action": "order", "order": "C > A"},
                       headers={"HX-Request": "true"})
    assert "Nothing to adjudicate" in done.text
    db.rollback()
    row = db.query(ItemConsensus).one()
    ids = [r.id for r in sorted(db.query(Response).all(), key=lambda r: r.position)]
    assert row.source == "adjudicated" and row.ranking == [ids[2], ids[0], ids[1]]
    assert row.cycle is not None  # the labels' circle stays on record
