"""The labeling queue: leases, overlap k, expiry, skips, races and double submits."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from app.core.db import begin_write, get_sessionmaker
from app.labeling import service
from app.models import Assignment, HumanLabel
from app.models.types import utcnow
from tests.support import login, make_project, make_user, sample_items, write

ITEM_RE = re.compile(r'name="item_id" value="(\d+)"')
KEY_RE = re.compile(r'name="idempotency_key" value="([0-9a-f]+)"')


def take(client, project_id: int, csrf: str) -> str:  # noqa: ANN001
    response = client.post(f"/projects/{project_id}/label/next", data={"csrf_token": csrf},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.text


def submit(client, project_id: int, csrf: str, page: str, **fields) -> str:  # noqa: ANN001, ANN003
    data = {"csrf_token": csrf, "item_id": ITEM_RE.search(page).group(1),
            "idempotency_key": KEY_RE.search(page).group(1), "time_spent_ms": "1500", **fields}
    response = client.post(f"/projects/{project_id}/label/submit", data=data,
                           headers={"HX-Request": "true"})
    assert response.status_code == 200, response.text
    return response.text


def labels(db) -> list[HumanLabel]:  # noqa: ANN001
    db.rollback()  # a fresh snapshot: what the server has committed by now
    return list(db.scalars(select(HumanLabel).order_by(HumanLabel.id)))


def test_submit_stores_the_label_and_swaps_in_the_next_item(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"},
                           rules=[("honest", "No lies"), ("polite", "No insults")],
                           items=sample_items(3))
    csrf = login(client, "lee@example.org")
    page = take(client, project.id, csrf)
    first_item = ITEM_RE.search(page).group(1)
    response_ids = re.findall(r'data-response-id="(\d+)"', page)
    nxt = submit(client, project.id, csrf, page, scale="2", rationale="A is kinder",
                 violation=[f"{response_ids[1]}:polite", f"{response_ids[1]}:honest"])
    assert 'id="label-panel"' in nxt and "Saved." in nxt
    assert ITEM_RE.search(nxt).group(1) != first_item
    [label] = labels(db)
    assert (label.choice, label.strength, label.rationale) == ("a", 1, "A is kinder")
    assert label.rule_violations == {response_ids[1]: ["honest", "polite"]}
    assert label.time_spent_ms == 1500 and label.rule_set_id is not None


def test_labels_follow_the_rules_an_admin_changes_between_items(client, db) -> None:
    from app.models import Project
    from app.projects.schemas import RuleIn
    from app.projects.service import set_rules

    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"},
                           rules=[("honest", "No lies")], items=sample_items(3))
    csrf = login(client, "lee@example.org")
    page = take(client, project.id, csrf)
    assert "No lies" in page
    page = submit(client, project.id, csrf, page, scale="1")  # the rules are read and kept
    write(lambda s: set_rules(s, project=s.get(Project, project.id),
                              rules=[RuleIn(id="polite", text="No insults")]))
    page = client.get(f"/projects/{project.id}/label").text  # the same lease, new rules
    assert "No insults" in page and "No lies" not in page
    response_id = re.findall(r'data-response-id="(\d+)"', page)[0]
    old_rule = client.post(f"/projects/{project.id}/label/submit", headers={"HX-Request": "true"},
                           data={"csrf_token": csrf, "item_id": ITEM_RE.search(page).group(1),
                                 "idempotency_key": KEY_RE.search(page).group(1), "scale": "1",
                                 "violation": f"{response_id}:honest"})
    assert old_rule.status_code == 400 and "Unknown rule ids: honest" in old_rule.text
    submit(client, project.id, csrf, page, scale="1", violation=f"{response_id}:polite")
    first, second = labels(db)
    assert first.rule_set_id != second.rule_set_id
    assert second.rule_violations == {response_id: ["polite"]}


def test_double_submit_stores_one_label(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"}, items=sample_items(3))
    csrf = login(client, "lee@example.org")
    page = take(client, project.id, csrf)
    submit(client, project.id, csrf, page, scale="1")
    submit(client, project.id, csrf, page, scale="1")  # a retry after a dropped connection
    assert len(labels(db)) == 1


def test_labeler_never_gets_an_item_twice_and_items_stop_at_k(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    for name in ("a", "b", "c"):
        make_user(f"{name}@example.org")
    project = make_project(admin, k=2, items=sample_items(2),
                           members={f"{n}@example.org": "labeler" for n in "abc"})
    seen: dict[str, list[str]] = {}
    for name in ("a", "b", "c"):
        client.cookies.clear()
        csrf = login(client, f"{name}@example.org")
        page = take(client, project.id, csrf)
        while 'name="item_id"' in page:
            seen.setdefault(name, []).append(ITEM_RE.search(page).group(1))
            page = submit(client, project.id, csrf, page, scale="3")
        assert "Nothing left to label" in page
    assert sorted(seen["a"]) == sorted(seen["b"]) and len(set(seen["a"])) == 2
    assert "c" not in seen  # both items had their k=2 labels already
    per_item = db.execute(select(HumanLabel.item_id, func.count()).group_by(HumanLabel.item_id))
    assert sorted(n for _, n in per_item) == [2, 2]


def test_skipped_item_goes_to_someone_else_but_not_back_to_the_skipper(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("a@example.org")
    make_user("b@example.org")
    project = make_project(admin, items=sample_items(1),
                           members={"a@example.org": "labeler", "b@example.org": "labeler"})
    csrf = login(client, "a@example.org")
    page = take(client, project.id, csrf)
    item = ITEM_RE.search(page).group(1)
    skipped = client.post(f"/projects/{project.id}/label/skip",
                          data={"csrf_token": csrf, "item_id": item},
                          headers={"HX-Request": "true"})
    assert "Nothing left to label" in skipped.text
    client.cookies.clear()
    csrf = login(client, "b@example.org")
    assert ITEM_RE.search(take(client, project.id, csrf)).group(1) == item


def test_expired_lease_returns_the_item_to_the_queue(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("a@example.org")
    make_user("b@example.org")
    project = make_project(admin, items=sample_items(1), k=1,
                           members={"a@example.org": "labeler", "b@example.org": "labeler"})
    csrf_a = login(client, "a@example.org")
    page_a = take(client, project.id, csrf_a)
    client.cookies.clear()
    csrf_b = login(client, "b@example.org")
    assert "Nothing left to label" in take(client, project.id, csrf_b)  # a holds the lease

    def expire(db):  # noqa: ANN001, ANN202
        db.execute(update(Assignment).values(expires_at=utcnow() - timedelta(seconds=1)))

    write(expire)
    page_b = take(client, project.id, csrf_b)
    assert ITEM_RE.search(page_b).group(1) == ITEM_RE.search(page_a).group(1)
    submit(client, project.id, csrf_b, page_b, scale="5")
    # a comes back late: the slot is gone, the label is refused with a reason, nothing stored.
    client.cookies.clear()
    csrf_a = login(client, "a@example.org")
    late = submit(client, project.id, csrf_a, page_a, scale="1")
    assert "lease on this item expired" in late
    assert [(lb.choice, lb.strength) for lb in labels(db)] == [("b", 2)]


def test_two_labelers_racing_for_the_last_slot_one_wins(app_env) -> None:
    admin = make_user("admin@example.org", admin=True)
    racers = [make_user(f"r{i}@example.org") for i in range(2)]
    project = make_project(admin, k=1, items=sample_items(1),
                           members={u.email: "labeler" for u in racers})
    for _ in range(5):
        barrier = threading.Barrier(len(racers))
        got: list[int | None] = []

        def race(user, barrier=barrier, got=got) -> None:  # noqa: ANN001
            session = get_sessionmaker()()
            try:
                barrier.wait()
                begin_write(session)
                task = service.next_task(session, project=project, user=user)
                session.commit()
                got.append(task.item.id if task else None)
            finally:
                session.close()

        threads = [threading.Thread(target=race, args=(u,)) for u in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(got, key=lambda v: v is None) [1:] == [None], got
        assert sum(v is not None for v in got) == 1

        def reset(db):  # noqa: ANN001, ANN202
            db.execute(Assignment.__table__.delete())

        write(reset)


def test_two_labelers_submitting_for_the_last_slot_store_one_label(app_env, db) -> None:
    """a's lease expired and b holds the item: both submit at once, only b's label fits."""
    from app.labeling.schemas import LabelIn

    admin = make_user("admin@example.org", admin=True)
    a, b = make_user("a@example.org"), make_user("b@example.org")
    project = make_project(admin, k=1, items=sample_items(1),
                           members={"a@example.org": "labeler", "b@example.org": "labeler"})
    task_a = write(service.next_task, project=project, user=a)
    write(lambda db: db.execute(update(Assignment).values(expires_at=utcnow())))
    task_b = write(service.next_task, project=project, user=b)
    assert task_a.item.id == task_b.item.id
    # a's lease ran out and b took the item; a submits late, at the same moment as b.
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def go(user, key: str) -> None:  # noqa: ANN001
        session = get_sessionmaker()()
        try:
            barrier.wait()
            begin_write(session)
            service.submit_label(session, project=project, user=user, data=LabelIn(
                item_id=task_a.item.id, idempotency_key=key, choice="tie"))
            session.commit()
            outcomes.append("stored")
        except Exception as exc:  # noqa: BLE001
            session.rollback()
            outcomes.append(type(exc).__name__)
        finally:
            session.close()

    threads = [threading.Thread(target=go, args=(u, k * 10))
               for u, k in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["Conflict", "stored"]
    assert [lb.user_id for lb in labels(db)] == [b.id]
