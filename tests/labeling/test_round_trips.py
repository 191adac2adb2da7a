"""What a labeler's submit costs the database: the statements of a submit with its next item.

Every labeler sends one per item, so each statement counts under load (bench/README.md).
"""

from __future__ import annotations

from sqlalchemy import event, update

from app.core.db import get_engine
from app.models import Project
from tests.labeling.test_queue import ITEM_RE, submit, take
from tests.support import login, make_project, make_user, sample_items, write


def _labeler_with_an_item(client):  # noqa: ANN001, ANN202
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"},
                           rules=[("honest", "No lies")], items=sample_items(4))
    write(lambda db: db.execute(update(Project).values(gold_rate=0.0)))  # no gold draw
    csrf = login(client, "lee@example.org")
    page = submit(client, project.id, csrf, take(client, project.id, csrf), scale="2")
    return project, csrf, page


def _statements(run):  # noqa: ANN001, ANN202
    """What ``run()`` returns, and the statements it sent (the writer's BEGIN on SQLite, a
    statement there, left out: PostgreSQL's goes with the connection)."""
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        statements.append(" ".join(statement.split()))

    event.listen(get_engine(), "before_cursor_execute", seen)
    try:
        result = run()
    finally:
        event.remove(get_engine(), "before_cursor_execute", seen)
    return result, [s for s in statements if not s.startswith("BEGIN")]


def test_a_submit_with_its_next_item_takes_five_statements_on_postgresql(client, backend) -> None:
    project, csrf, page = _labeler_with_an_item(client)
    page, ran = _statements(lambda: submit(client, project.id, csrf, page, scale="4"))
    assert "Saved." in page and 'name="item_id"' in page  # stored, and the next one is shown
    # Login and project; item lock (and queue lock); lease, earlier label and responses; the
    # label, the lease's end, the item's recount and the next candidate (one statement on
    # PostgreSQL, four on SQLite); new lease and its responses (two statements on SQLite).
    assert len(ran) == (5 if backend == "postgresql" else 9), "\n".join(ran)
    # A LIMIT sent as a parameter makes PostgreSQL plan the statement anew at every run.
    assert not [s for s in ran if "LIMIT %(" in s or "LIMIT ?" in s]


def test_a_skip_with_its_next_item_takes_five_statements_on_postgresql(client, backend) -> None:
    project, csrf, page = _labeler_with_an_item(client)
    skipped = ITEM_RE.search(page).group(1)
    response, ran = _statements(lambda: client.post(
        f"/projects/{project.id}/label/skip", data={"csrf_token": csrf, "item_id": skipped},
        headers={"HX-Request": "true"}))
    assert "Skipped." in response.text
    assert ITEM_RE.search(response.text).group(1) != skipped
    # Login and project; queue lock (PostgreSQL); the lease; its end and the next candidate
    # (one statement on PostgreSQL); new lease and its responses (one on PostgreSQL).
    assert len(ran) == (5 if backend == "postgresql" else 6), "\n".join(ran)
