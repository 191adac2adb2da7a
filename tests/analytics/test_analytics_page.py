"""The analytics page: agreement, per-labeler habits and gold accuracy, charts."""

from __future__ import annotations

import re

import krippendorff
import numpy as np
import pytest

from app.models import Item, Project, User
from tests.support import label_all, login, make_project, make_user, sample_items, write


def setup(db):  # noqa: ANN001, ANN201
    admin = make_user("admin@example.org", admin=True)
    for name in ("ann", "bob"):
        make_user(f"{name}@example.org")
    items = sample_items(10)
    items[9]["gold"] = 1  # the second response is known to be better
    project = make_project(admin, k=2, items=items, members={
        "ann@example.org": "labeler", "bob@example.org": "labeler"})
    users = {u.email.split("@")[0]: u for u in db.query(User).all()}
    return admin, project, users


def test_agreement_labelers_and_gold_accuracy(client, db) -> None:
    admin, project, users = setup(db)

    def gold_first(db):  # noqa: ANN001, ANN202
        p = db.get(Project, project.id)
        p.gold_rate = 1.0  # hand out the gold item first
        return p

    project = write(gold_first)
    # ann: always A (a position bias), ties nothing; bob: A on even items, B on odd, ties on 8
    def ann(task):  # noqa: ANN001, ANN202
        return {"choice": "a", "strength": 1}

    def bob(task):  # noqa: ANN001, ANN202
        i = int(task.item.external_id.split("-")[1])
        if i == 8:
            return {"choice": "tie"}
        return {"choice": "a" if i % 2 == 0 else "b", "strength": 2}

    assert label_all(project, users["ann"], ann) == 10
    assert label_all(project, users["bob"], bob) == 10
    db.rollback()
    gold_item = db.query(Item).filter_by(external_id="item-9").one()
    assert gold_item.is_gold and gold_item.label_count == 2

    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}/analytics")
    assert page.status_code == 200, page.text
    html = page.text
    # Krippendorff's alpha over the items' choices, checked against the krippendorff package
    ann_row = ["a"] * 10
    bob_row = ["a" if i % 2 == 0 else "b" for i in range(10)]
    bob_row[8] = "tie"
    codes = {"a": 0, "b": 1, "tie": 2}
    expected = krippendorff.alpha(reliability_data=np.array(
        [[codes[v] for v in ann_row], [codes[v] for v in bob_row]], dtype=float),
        level_of_measurement="nominal")
    alpha = float(re.search(r'<dd id="alpha">([-\d.]+)</dd>', html).group(1))
    assert alpha == pytest.approx(expected, abs=5e-4)
    assert '<dd id="percent-agreement">40.0%</dd>' in html  # items 0, 2, 4, 6 agree
    rows = dict(re.findall(r"<tr><td>(ann|bob)</td>(.*?)</tr>", html, re.S))
    cells = {k: re.findall(r"<td>(.*?)</td>", v, re.S) for k, v in rows.items()}
    # labels, median time, per hour, agreement, gold, first-shown, tie rate
    assert cells["ann"][0] == "10" and cells["bob"][0] == "10"
    assert cells["ann"][4].startswith("0%") and cells["bob"][4].startswith("100%")  # gold
    assert cells["ann"][5] == "100%" and cells["bob"][5] == "44%"  # picks A: 4 of 9
    assert cells["ann"][6] == "0%" and cells["bob"][6] == "10%"
    # pictures, not only tables
    assert html.count("<svg") >= 8 and "Labels per day by source" in html
    # items 1, 3, 5, 7 (A against B) and 8 (A against a tie) wait for adjudication; the gold
    # item 9 is decided by its known answer
    assert re.search(r'<dd id="conflicts">(\d+)</dd>', html).group(1) == "5"


def test_labelers_cannot_see_analytics_or_gold(client, db) -> None:
    admin, project, users = setup(db)
    login(client, "ann@example.org")
    assert client.get(f"/projects/{project.id}/analytics").status_code == 403
    assert client.get(f"/projects/{project.id}/gold").status_code == 403


def test_admin_marks_gold_by_letter(client, db) -> None:
    admin, project, users = setup(db)
    csrf = login(client, "admin@example.org")
    response = client.post(f"/projects/{project.id}/gold", data={
        "csrf_token": csrf, "external_id": "item-3", "answer": "B"}, follow_redirects=True)
    assert response.status_code == 200 and "item-3" in response.text
    db.rollback()
    item = db.query(Item).filter_by(external_id="item-3").one()
    assert item.is_gold and len(item.gold["ranking"]) == 2
    bad = client.post(f"/projects/{project.id}/gold", data={
        "csrf_token": csrf, "external_id": "item-3", "answer": "Z"})
    assert bad.status_code == 400 and "A to B" in bad.text
    missing = client.post(f"/projects/{project.id}/gold", data={
        "csrf_token": csrf, "external_id": "nope", "answer": "A"})
    assert missing.status_code == 404
