"""A labeler who logs out holds no item: their leases end at once, not lease_minutes later."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Assignment, HumanLabel
from app.models.types import utcnow
from tests.labeling.test_queue import ITEM_RE, submit, take
from tests.support import csrf_from, login, make_project, make_user, sample_items


def logout(client) -> None:  # noqa: ANN001
    csrf = csrf_from(client.get("/projects").text)
    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    client.cookies.clear()


def live_leases(db, user_id: int) -> int:  # noqa: ANN001
    db.rollback()
    return len(db.scalars(select(Assignment).where(
        Assignment.user_id == user_id, Assignment.status == "active",
        Assignment.expires_at > utcnow())).all())


def test_logout_hands_the_leavers_item_to_another_labeler(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    a = make_user("a@example.org")
    make_user("b@example.org")
    project = make_project(admin, k=1, items=sample_items(1),
                           members={"a@example.org": "labeler", "b@example.org": "labeler"})
    page_a = take(client, project.id, login(client, "a@example.org"))
    item = ITEM_RE.search(page_a).group(1)
    logout(client)
    assert live_leases(db, a.id) == 0

    csrf_b = login(client, "b@example.org")
    page_b = take(client, project.id, csrf_b)  # a's 30-minute lease no longer blocks it
    assert ITEM_RE.search(page_b).group(1) == item
    assert "Saved." in submit(client, project.id, csrf_b, page_b, scale="1")
    db.rollback()
    assert [lb.item_id for lb in db.scalars(select(HumanLabel))] == [int(item)]


def test_logout_keeps_labels_and_other_labelers_leases(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    a, c = make_user("a@example.org"), make_user("c@example.org")
    project = make_project(admin, k=1, items=sample_items(3),
                           members={"a@example.org": "labeler", "c@example.org": "labeler"})
    csrf_c = login(client, "c@example.org")
    take(client, project.id, csrf_c)
    client.cookies.clear()
    csrf_a = login(client, "a@example.org")
    page = take(client, project.id, csrf_a)
    page = submit(client, project.id, csrf_a, page, scale="2")  # labels one, leases the next
    assert live_leases(db, a.id) == 1
    logout(client)
    assert live_leases(db, a.id) == 0
    assert live_leases(db, c.id) == 1  # someone else's session is none of a's business
    db.rollback()
    assert [lb.user_id for lb in db.scalars(select(HumanLabel))] == [a.id]


def test_labeler_back_before_anyone_took_the_item_gets_it_again(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("a@example.org")
    project = make_project(admin, k=1, items=sample_items(2),
                           members={"a@example.org": "labeler"})
    item = ITEM_RE.search(take(client, project.id, login(client, "a@example.org"))).group(1)
    logout(client)
    csrf = login(client, "a@example.org")
    page = take(client, project.id, csrf)  # the lapsed lease is renewed: nobody filled it
    assert ITEM_RE.search(page).group(1) == item
    assert "Saved." in submit(client, project.id, csrf, page, scale="4")
