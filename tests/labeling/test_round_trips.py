"""What a labeler's submit costs the database: the statements of a submit with its next item.

Every labeler sends one per item, so each statement counts under load (bench/README.md).
"""

from __future__ import annotations

import re

from sqlalchemy import event, insert, select, text, update

from app.core.db import get_engine, session_scope
from app.models import Assignment, Item, Project
from app.models.types import utcnow
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


def _sent(run):  # noqa: ANN001, ANN202
    """What ``run()`` returns, and the statements it sent as the driver got them: (SQL, its
    parameters)."""
    sent: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, *args) -> None:  # noqa: ANN001, ANN002
        sent.append((statement, parameters))

    event.listen(get_engine(), "before_cursor_execute", seen)
    try:
        result = run()
    finally:
        event.remove(get_engine(), "before_cursor_execute", seen)
    return result, sent


def _statements(run):  # noqa: ANN001, ANN202
    """What ``run()`` returns, and the statements it sent (the writer's BEGIN on SQLite, a
    statement there, left out: PostgreSQL's goes with the connection)."""
    result, sent = _sent(run)
    statements = [" ".join(statement.split()) for statement, _ in sent]
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


PAST_LEASES = re.compile(r"EXISTS \(SELECT \S+\s+FROM assignments\s+WHERE "
                         r"assignments\.item_id = items\.id AND assignments\.user_id = ")


def _checking_past_leases(run):  # noqa: ANN001, ANN202
    """``_sent``, keeping the statements that check a labeler's past leases."""
    result, sent = _sent(run)
    return result, [(sql, parameters) for sql, parameters in sent if PAST_LEASES.search(sql)]


def _plan(db, statement: str, parameters) -> str:  # noqa: ANN001
    """The database's plan for a statement as sent (EXPLAIN runs nothing)."""
    postgres = db.get_bind().dialect.name == "postgresql"
    explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    rows = db.connection().exec_driver_sql(explain + statement, parameters).all()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


def test_the_queue_checks_a_labelers_past_items_by_index_whatever_the_statistics(
        client, backend) -> None:  # noqa: ANN001
    """Whether the labeler ever had a candidate item is one probe of the (item, labeler)
    index per candidate, so "next item" does not slow down as the assignments of every
    project and labeler pile up. PostgreSQL without statistics on assignments (autovacuum
    not run yet, or off) planned it as a read of the whole table at every call. Checked on
    the statements as sent: the lease's candidate query, the submit's (which looks for the
    next candidate too on PostgreSQL) and the gold item's."""
    from app.labeling import repository
    from app.models import User

    admin = make_user("admin@example.org", admin=True)
    lee = make_user("lee@example.org")
    # At this scale PostgreSQL 15 planned the NOT EXISTS as a scan of all 2,700 assignments.
    items_in_project, other_labelers, had = 1900, 8, 300
    project = make_project(admin, members={"lee@example.org": "labeler"}, k=3,
                           items=sample_items(items_in_project))
    write(lambda db: db.execute(update(Project).values(gold_rate=0.0)))  # no gold draw
    now = utcnow()

    def pile_up(db) -> None:  # noqa: ANN001
        others = db.scalars(insert(User).returning(User.id), [
            {"email": f"other{i}@example.org", "name": f"other{i}", "password_hash": "x"}
            for i in range(other_labelers)]).all()
        items = db.scalars(select(Item.id).where(Item.project_id == project.id)
                           .order_by(Item.id)).all()
        db.execute(insert(Assignment), [
            {"project_id": project.id, "item_id": item, "user_id": user, "status": "submitted",
             "leased_at": now, "expires_at": now, "finished_at": now}
            for user in [*others, lee.id] for item in items[:had]])

    write(pile_up)
    with session_scope(write=True) as db:
        db.execute(text("ANALYZE items"))  # as after a large import (refresh_statistics)
    csrf = login(client, "lee@example.org")
    page, leasing = _checking_past_leases(lambda: take(client, project.id, csrf))
    assert f"Question number {had}?" in page  # the first item lee never had
    page, submitting = _checking_past_leases(
        lambda: submit(client, project.id, csrf, page, scale="2"))
    assert "Saved." in page and f"Question number {had + 1}?" in page
    _, gold = _checking_past_leases(
        lambda: write(repository.next_gold_item, project_id=project.id, user_id=lee.id))
    sent = [*leasing, *submitting, *gold]
    assert len(sent) == 3, sent

    probe = ("using uq_assignments_item_id_user_id" if backend == "postgresql"
             else "INDEX sqlite_autoindex_assignments_1 (item_id=? AND user_id=?)")
    with session_scope(write=True) as db:
        if backend == "postgresql":  # assignments as a table autovacuum has not analysed yet
            db.execute(text("DELETE FROM pg_statistic WHERE starelid = 'assignments'::regclass"))
            db.execute(text("UPDATE pg_class SET reltuples = -1 "
                            "WHERE oid = 'assignments'::regclass"))
        plans = [_plan(db, statement, parameters) for statement, parameters in sent]
        db.execute(text("ANALYZE assignments"))
        plans += [_plan(db, statement, parameters) for statement, parameters in sent]
    for plan in plans:
        assert probe in plan, plan
        assert not re.search(r"(Seq Scan on|SCAN) assignments\b", plan), plan
