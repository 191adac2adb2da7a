"""The project's item list: keyset pages that visit every item once, filters that return
exactly the matching items, cursors that are checked, and who may look."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.auth.service import create_api_token
from app.consensus.service import refresh, set_gold
from app.exports.filters import item_tags
from app.items.service import import_file
from app.models import Assignment, HumanLabel, Item, ItemConsensus
from app.models.labels import AssignmentStatus
from app.models.types import utcnow
from tests.support import label_all, login, make_project, make_user, sample_items, write

K = 2


def _items(n: int, start: int = 0) -> list[dict]:
    out = sample_items(n, start=start)
    for i, item in enumerate(out, start):
        if i % 3 == 0:
            item["external_id"] = f"other-{i}"
        item["metadata"] = {"tags": ["even"] if i % 2 == 0 else [],
                            **({"tag": "fives, x"} if i % 5 == 0 else {})}
    return out


@pytest.fixture
def world():  # noqa: ANN201
    """A k=2 project of 30 items: 0-4 agreed by two labelers, 5-7 in conflict, 8-9 with one
    label, item 20 leased now, item 25 gold, items 26-29 round 2; and a read token."""
    admin = make_user("admin@example.org", admin=True)
    alice, bob = make_user("alice@example.org"), make_user("bob@example.org")
    make_user("lab@example.org")
    make_user("rev@example.org")
    project = make_project(admin, k=K, items=_items(30), members={
        "alice@example.org": "labeler", "bob@example.org": "labeler",
        "lab@example.org": "labeler", "rev@example.org": "reviewer"})
    make_project(admin, name="Other", members={"lab@example.org": "labeler"},
                 items=sample_items(3, start=100))

    def number(task) -> int:  # noqa: ANN001
        return int(task.item.external_id.split("-")[1])

    label_all(project, alice, lambda t: {"choice": "a", "strength": 2}
              if number(t) < 10 else None, key="alice")
    label_all(project, bob, lambda t: ({"choice": "a", "strength": 2} if number(t) < 5 else
                                       {"choice": "b", "strength": 2} if number(t) < 8
                                       else None), key="bob")

    def arrange(db) -> dict[int, int]:  # noqa: ANN001
        ids = dict(db.execute(select(Item.external_id, Item.id)
                              .where(Item.project_id == project.id)).all())
        by_number = {int(e.split("-")[1]): i for e, i in ids.items()}
        db.add(Assignment(project_id=project.id, item_id=by_number[20], user_id=admin.id,
                          status=AssignmentStatus.ACTIVE, leased_at=utcnow(),
                          expires_at=utcnow() + timedelta(minutes=30)))
        db.execute(update(Item).where(Item.id.in_([by_number[n] for n in range(26, 30)]))
                   .values(round=2))
        return by_number

    by_number = write(arrange)
    write(lambda db: set_gold(db, project=project, item_id=by_number[25],
                              ranking=_ranking(db, by_number[25])))
    refresh(project.id)
    token = write(create_api_token, user=admin, project_id=project.id, name="list",
                  scopes=["read"]).secret
    return project, by_number, {"Authorization": f"Bearer {token}"}


def _ranking(db, item_id: int) -> list[int]:  # noqa: ANN001
    from app.items.repository import original_responses

    return [r.id for r in original_responses(db, item_id=item_id)]


def _walk(client, project_id: int, headers: dict, **params) -> list[dict]:  # noqa: ANN001
    """Every page of the list, following next_cursor; the items in the order seen."""
    seen, cursor = [], None
    for _ in range(200):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        r = client.get(f"/api/v1/projects/{project_id}/items", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the pages never ended")


def test_pages_visit_every_item_once_in_order_even_with_inserts_between(client, world) -> None:
    project, _, headers = world
    url = f"/api/v1/projects/{project.id}/items"
    first = client.get(url, params={"limit": 7}, headers=headers).json()
    assert len(first["items"]) == 7 and first["prev_cursor"] is None
    # New items arrive while someone pages: they come at the end, each once.
    report = write(lambda db: import_file(
        db, project=project, user=project_admin(db), filename="more.jsonl", file_format="jsonl",
        data="\n".join(json.dumps(i) for i in sample_items(5, start=500)).encode()))
    assert report.ok
    seen = list(first["items"])
    cursor = first["next_cursor"]
    while cursor:
        body = client.get(url, params={"limit": 7, "cursor": cursor}, headers=headers).json()
        assert len(body["items"]) <= 7
        seen += body["items"]
        cursor = body["next_cursor"]
    ids = [i["id"] for i in seen]
    all_ids = write(lambda db: list(db.scalars(
        select(Item.id).where(Item.project_id == project.id).order_by(Item.id))))
    assert ids == all_ids and len(ids) == 35
    # And back again with prev_cursor, from the last page to the first.
    back, cursor = [], body["prev_cursor"]
    back = body["items"]
    while cursor:
        body = client.get(url, params={"limit": 7, "cursor": cursor}, headers=headers).json()
        back = body["items"] + back
        cursor = body["prev_cursor"]
    assert [i["id"] for i in back] == all_ids


def project_admin(db):  # noqa: ANN001, ANN201
    from app.models import User

    return db.scalar(select(User).where(User.email == "admin@example.org"))


def test_each_filter_returns_exactly_the_matching_items(client, world) -> None:
    project, n, headers = world

    def truth(db) -> dict[str, set[int]]:  # noqa: ANN001
        items = list(db.scalars(select(Item).where(Item.project_id == project.id)))
        labels = dict(db.execute(select(HumanLabel.item_id, func.count())
                                 .group_by(HumanLabel.item_id)).all())
        leased = set(db.scalars(select(Assignment.item_id).where(
            Assignment.status == AssignmentStatus.ACTIVE, Assignment.expires_at > utcnow())))
        cons = {c.item_id: c for c in db.scalars(select(ItemConsensus))}
        return {
            "done": {i.id for i in items if labels.get(i.id, 0) >= K},
            "in_progress": {i.id for i in items if 0 < labels.get(i.id, 0) < K
                            or (labels.get(i.id, 0) == 0 and i.id in leased)},
            "todo": {i.id for i in items if labels.get(i.id, 0) == 0 and i.id not in leased},
            "conflict": {i for i, c in cons.items() if c.status in ("conflict", "intransitive")},
            "gold": {i.id for i in items if i.is_gold},
            "prefix": {i.id for i in items if i.external_id.startswith("other-1")},
            "round": {i.id for i in items if i.round == 2},
            "tag": {i.id for i in items if "fives" in item_tags(i.meta)},
            "even": {i.id for i in items if "even" in item_tags(i.meta)},
            "source": {i for i, c in cons.items() if c.source == "human"},
            "gold_source": {i for i, c in cons.items() if c.source == "gold"},
        }

    t = write(truth)
    # The world is what the docstring says, so each filter below is a real test.
    assert t["done"] == {n[i] for i in range(8)} and t["conflict"] == {n[i] for i in (5, 6, 7)}
    assert t["in_progress"] == {n[8], n[9], n[20]} and t["gold"] == {n[25]}
    cases = {"done": {"status": "done"}, "in_progress": {"status": "in_progress"},
             "todo": {"status": "todo"}, "conflict": {"status": "conflict"},
             "gold": {"status": "gold"}, "prefix": {"prefix": "other-1"},
             "round": {"round": "2"}, "tag": {"tag": "fives"}, "even": {"tag": "even"},
             "source": {"source": "human"}, "gold_source": {"source": "gold"}}
    for name, params in cases.items():
        for limit in ("2", "50"):
            got = _walk(client, project.id, headers, limit=limit, **params)
            ids = [i["id"] for i in got]
            assert ids == sorted(t[name]), (name, limit, ids, sorted(t[name]))
            if name in ("done", "in_progress", "todo"):
                assert {i["status"] for i in got} <= {name}
    # Filters combine: done and in conflict is empty of todo items.
    both = _walk(client, project.id, headers, status="todo", tag="even")
    assert [i["id"] for i in both] == sorted(t["todo"] & t["even"])


def _tagged(i: int) -> dict:
    """Item i's metadata: "blue" from a list, a comma string or the ``tag`` key in turn, and
    look-alikes that are not the tag "blue" (a list keeps its strings as they are)."""
    return [{"tags": ["blue", "x"]}, {"tags": "red, blue"}, {"tag": "blue"},
            {"tags": ["blue ", "Blue"]}, {"tags": "bluebird", "tag": ["blue"]},
            {"tags": [7, "red"]}][i % 6]


def _walk_back(client, project_id: int, headers: dict, cursor: str, **params) -> list[list]:  # noqa: ANN001
    """The pages before ``cursor``, following prev_cursor to the first; each page's ids."""
    pages = []
    while cursor:
        r = client.get(f"/api/v1/projects/{project_id}/items",
                       params=dict(params, cursor=cursor), headers=headers)
        assert r.status_code == 200, r.text
        pages.insert(0, [i["id"] for i in r.json()["items"]])
        cursor = r.json()["prev_cursor"]
    return pages


def _after(item_id: int, *, before: bool = False) -> str:
    from app.items.list_schemas import Cursor

    return Cursor(item_id, before=before).encode()


def test_tag_pages_are_full_and_in_id_order_forward_and_back(client, world, monkeypatch) -> None:
    project, n, headers = world
    admin = write(project_admin)
    items = sample_items(40, start=200)
    for i, item in enumerate(items):
        item["metadata"] = _tagged(i)
        if i % 4 == 0:
            item["external_id"] = f"pre-{i}"
    # Half as one synchronous import, half through an import job (the Celery task's body).
    write(lambda db: import_file(db, project=project, user=admin, filename="a.jsonl",
                                 file_format="jsonl", data="\n".join(
                                     json.dumps(i) for i in items[:20]).encode()))
    with monkeypatch.context() as m:
        from tests.support import reset_caches

        m.setenv("TANDEM_IMPORT_SYNC_LIMIT", "2")
        reset_caches()
        job = write(lambda db: import_file(db, project=project, user=admin, filename="b.jsonl",
                                           file_format="jsonl", data="\n".join(
                                               json.dumps(i) for i in items[20:]).encode()))
    reset_caches()
    assert job.job_id is not None
    from app.items.service import run_import_job

    run_import_job(job_id=job.job_id)

    def truth(tag: str) -> list[int]:
        return write(lambda db: sorted(i.id for i in db.scalars(select(Item).where(
            Item.project_id == project.id)) if tag in item_tags(i.meta)))

    blue = truth("blue")
    assert len(blue) == 7 + 7 + 7 + 6  # of 40 items: i % 6 in (0, 1, 2, 4)
    for tag in ("blue", "red", "7", "even", "Blue", "bluebird", "nothing"):
        expected = truth(tag)
        for limit in (1, 3, 50):
            pages, cursor = [], None
            while True:
                r = client.get(f"/api/v1/projects/{project.id}/items", headers=headers,
                               params={"tag": tag, "limit": limit,
                                       **({"cursor": cursor} if cursor else {})}).json()
                pages.append([i["id"] for i in r["items"]])
                assert all(tag in i["tags"] for i in r["items"])
                cursor = r["next_cursor"]
                if cursor is None:
                    break
            assert [i for p in pages for i in p] == expected, (tag, limit)
            # Every page is full but the last (no page stops short with a cursor to go on).
            assert all(len(p) == limit for p in pages[:-1]) and len(pages[-1]) <= limit
            # And back from the last page to the first: the same pages.
            back = _walk_back(client, project.id, headers, r["prev_cursor"], tag=tag,
                              limit=limit)
            assert [*back, pages[-1]] == pages, (tag, limit)
    # The tag with the other filters: an external-id prefix, a round, a status, a source;
    # walking the tag's items or (SMALL = 1: every range counts as large) the filter's.
    from app.items.list_repository import _Tagged

    pre = [i for i in blue if write(lambda db, i=i: db.get(Item, i).external_id)
           .startswith("pre-")]
    assert pre
    write(lambda db: db.execute(update(Item).where(Item.id.in_(blue[::2])).values(round=2)))
    even = truth("even")
    human = write(lambda db: set(db.scalars(select(ItemConsensus.item_id).where(
        ItemConsensus.source == "human"))))
    for small in (_Tagged.SMALL, 1):
        monkeypatch.setattr(_Tagged, "SMALL", small)
        for params, expected in (({"prefix": "pre-"}, pre), ({"round": "2"}, blue[::2]),
                                 ({"status": "todo"}, blue),  # none labeled or held
                                 ({"status": "done"}, []), ({"source": "gold"}, [])):
            got = _walk(client, project.id, headers, tag="blue", limit="2", **params)
            assert [i["id"] for i in got] == expected, (small, params)
            if not expected:
                continue
            last = client.get(f"/api/v1/projects/{project.id}/items", headers=headers, params={
                "tag": "blue", "limit": 2, "cursor": _after(expected[-1] + 1, before=True),
                **params}).json()
            back = _walk_back(client, project.id, headers, last["prev_cursor"], tag="blue",
                              limit=2, **params)
            assert [i for p in back for i in p] + [i["id"] for i in last["items"]] == expected
        got = _walk(client, project.id, headers, tag="even", status="done", limit="2")
        assert [i["id"] for i in got] == sorted(set(even) & {n[i] for i in range(8)})
        got = _walk(client, project.id, headers, tag="even", source="human", limit="1")
        assert [i["id"] for i in got] == sorted(set(even) & human) and human
        got = _walk(client, project.id, headers, tag="even", status="in_progress")
        assert [i["id"] for i in got] == [n[8], n[20]]  # one label; held by a labeler now


@pytest.mark.parametrize("bad", ["garbage!", "YTo=", "Yzox", "eDo1", "YTotMQ",
                                 "YTo5OTk5OTk5OTk5OTk5"])
def test_a_bad_cursor_is_a_400_with_a_message(client, world, bad) -> None:  # noqa: ANN001
    project, _, headers = world
    r = client.get(f"/api/v1/projects/{project.id}/items", params={"cursor": bad},
                   headers=headers)
    assert r.status_code == 400 and "cursor" in r.text
    login(client, "rev@example.org")
    page = client.get(f"/projects/{project.id}/items", params={"cursor": bad})
    assert page.status_code == 400 and "cursor" in page.text


def test_bad_filters_are_a_400_that_names_them(client, world) -> None:
    project, _, headers = world
    url = f"/api/v1/projects/{project.id}/items"
    for params, word in (({"status": "nope"}, "status"), ({"round": "x"}, "round"),
                         ({"limit": "1000"}, "limit"), ({"source": "?"}, "source"),
                         ({"prefix": "a\x00"}, "NUL")):
        r = client.get(url, params=params, headers=headers)
        assert r.status_code == 400 and word in r.text, (params, r.text)


def test_reviewers_browse_labelers_get_403_and_outsiders_404(client, world) -> None:
    project, n, _ = world
    login(client, "rev@example.org")
    page = client.get(f"/projects/{project.id}/items")
    assert page.status_code == 200 and "other-0" in page.text and 'id="next-page"' not in page.text
    assert client.get(f"/projects/{project.id}/items/{n[5]}").status_code == 200
    count = client.get(f"/projects/{project.id}/items-count", params={"status": "done"})
    assert "8 items" in count.text
    client.cookies.clear()
    login(client, "alice@example.org")  # a labeler here
    assert client.get(f"/projects/{project.id}/items").status_code == 403
    assert client.get(f"/projects/{project.id}/items/{n[0]}").status_code == 403
    client.cookies.clear()
    login(client, "lab@example.org")  # a labeler of both projects
    other = write(lambda db: db.scalar(select(Item.project_id).where(
        Item.external_id == "item-100")))
    assert client.get(f"/projects/{other}/items").status_code == 403
    make_user("out@example.org")  # a labeler of the other project only

    def join_other(db) -> None:  # noqa: ANN001
        from app.models import Project
        from app.projects.schemas import MemberIn
        from app.projects.service import add_member

        add_member(db, project=db.get(Project, other),
                   data=MemberIn(email="out@example.org", role="labeler"))

    write(join_other)
    client.cookies.clear()
    login(client, "out@example.org")
    assert client.get(f"/projects/{project.id}/items").status_code == 404
    assert client.get(f"/projects/{project.id}/items/{n[0]}").status_code == 404


def test_an_item_of_another_project_is_404_under_this_one(client, world) -> None:
    project, _, _ = world
    other_item = write(lambda db: db.scalar(select(Item.id).where(
        Item.external_id == "item-100")))
    login(client, "admin@example.org")
    assert client.get(f"/projects/{project.id}/items/{other_item}").status_code == 404


def test_the_token_needs_the_read_scope_and_its_own_project(client, world) -> None:
    project, _, headers = world
    admin = write(project_admin)
    export_only = write(create_api_token, user=admin, project_id=project.id, name="e",
                        scopes=["export"]).secret
    r = client.get(f"/api/v1/projects/{project.id}/items",
                   headers={"Authorization": f"Bearer {export_only}"})
    assert r.status_code == 403
    other = write(lambda db: db.scalar(select(Item.project_id).where(
        Item.external_id == "item-100")))
    r = client.get(f"/api/v1/projects/{other}/items", headers=headers)
    assert r.status_code in (403, 404)
    ok = client.get(f"/api/v1/projects/{project.id}/items", headers=headers)
    assert ok.status_code == 200 and ok.json()["items"][0]["external_id"] == "other-0"


def test_the_htmx_page_link_swaps_only_the_table(client, world) -> None:
    project, _, _ = world
    login(client, "rev@example.org")
    page = client.get(f"/projects/{project.id}/items", params={"limit": "10"})
    assert 'id="next-page"' in page.text
    partial = client.get(f"/projects/{project.id}/items", params={"limit": "10"},
                         headers={"HX-Request": "true", "HX-Target": "item-table"})
    assert partial.text.lstrip().startswith('<div id="item-table">')
    assert "<html" not in partial.text


def test_progress_counts_match_a_recount_from_labels_and_leases(client, world) -> None:
    from app.labeling.service import status_counts

    project, n, _ = world
    counts = write(lambda db: status_counts(db, project=project))
    # 8 with two labels, 2 with one, item 20 leased, the other 19 untouched.
    assert counts == {"done": 8, "in_progress": 3, "todo": 19}


def test_a_big_projects_dashboard_serves_a_recent_recount(client, world, monkeypatch) -> None:
    """Above the size limit the dashboard reads the last full recount (never a counter),
    kept in the database: a label is not counted until the recount is due, then it
    is, in the background."""
    import time

    from app.core.config import get_settings
    from app.labeling import progress_cache
    from app.labeling.service import project_progress
    from tests.support import wait_for

    def settled() -> None:
        wait_for(lambda: not progress_cache.refreshing(), timeout=10, what="the recount")

    project, n, _ = world
    monkeypatch.setattr(get_settings(), "progress_recount_above_items", 10)
    monkeypatch.setattr(get_settings(), "progress_recount_every_s", 0.5)
    first = write(lambda db: project_progress(db, project=project))
    assert first.as_of is None and first.done == 8
    settled()
    label_all(project, make_user("dee@example.org"),
              lambda t: {"choice": "a", "strength": 1} if t.item.id == n[8] else None)
    cached = write(lambda db: project_progress(db, project=project))
    assert cached.as_of is not None and cached.done == 8, "not due yet: the last recount"
    assert [s.email for s, _, _ in cached.labelers] == [s.email for s, _, _ in first.labelers]
    login(client, "admin@example.org")
    assert "progress-as-of" in client.get(f"/projects/{project.id}/progress").text

    time.sleep(0.6)
    write(lambda db: project_progress(db, project=project))  # stale: recounts in background

    def recounted() -> bool:
        return write(lambda db: project_progress(db, project=project)).done == 9

    wait_for(recounted, timeout=10, what="the background recount")
    monkeypatch.setattr(get_settings(), "progress_recount_every_s", 3600.0)
    settled()
