"""What a labeler's submit costs the database: the statements of a submit with its next item.

Every labeler sends one per item, so each statement counts under load (bench/README.md).
"""

from __future__ import annotations

from sqlalchemy import event, update

from app.core.db import get_engine
from app.models import Project
from tests.labeling.test_queue import submit, take
from tests.support import login, make_project, make_user, sample_items, write


def test_a_submit_with_its_next_item_takes_eight_statements_on_postgresql(client, backend) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"},
                           rules=[("honest", "No lies")], items=sample_items(4))
    write(lambda db: db.execute(update(Project).values(gold_rate=0.0)))  # no gold draw
    csrf = login(client, "lee@example.org")
    page = submit(client, project.id, csrf, take(client, project.id, csrf), scale="2")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        statements.append(" ".join(statement.split()))

    event.listen(get_engine(), "before_cursor_execute", seen)
    try:
        page = submit(client, project.id, csrf, page, scale="4")
    finally:
        event.remove(get_engine(), "before_cursor_execute", seen)
    assert "Saved." in page and 'name="item_id"' in page  # stored, and the next one is shown
    # The writer's BEGIN on SQLite is a statement too; PostgreSQL's goes with the connection.
    ran = [s for s in statements if not s.startswith("BEGIN")]
    # Login and project; item lock (and queue lock); lease and earlier label; responses; the
    # label, the lease's end and the item's recount (one statement on PostgreSQL, three on
    # SQLite); next candidate; new lease; its responses.
    assert len(ran) == (8 if backend == "postgresql" else 10), "\n".join(ran)
    # A LIMIT sent as a parameter makes PostgreSQL plan the statement anew at every run.
    assert not [s for s in ran if "LIMIT %(" in s or "LIMIT ?" in s]
