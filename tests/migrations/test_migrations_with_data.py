"""Every migration goes down and back up with data in the tables, on SQLite and PostgreSQL,
and the rows of the tables that the first revision made come back with the same ids and
contents (the revisions are read from Alembic, so new ones join the walk by themselves)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, column, create_engine, inspect, select, table, text

from app.core.migrate import alembic_config, downgrade, upgrade
from app.models.types import JSONType
from tests.conftest import PG_ADMIN_URL, _pg_url
from tests.ops.seed import seed_everything
from tests.support import reset_caches


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own (the walk drops tables the shared one needs)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'walk.sqlite3'}"
        upgrade(url)
        yield url
        reset_caches()
        return
    name = f"tandem_walk_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    try:
        upgrade(url)
        yield url
    finally:
        reset_caches()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def revisions(url: str) -> list[str]:
    """The revisions from the first to head, in order (the history must be one line)."""
    script = ScriptDirectory.from_config(alembic_config(url))
    assert len(script.get_heads()) == 1, script.get_heads()
    chain = [r.revision for r in script.walk_revisions()]  # head first
    return list(reversed(chain))


def current(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT version_num FROM alembic_version"))


def columns_now(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        found = inspect(conn)
        return {t: [c["name"] for c in found.get_columns(t)]
                for t in found.get_table_names() if t != "alembic_version"}


def contents(engine: Engine, columns: dict[str, list[str]]) -> dict[str, list[dict]]:
    """These columns of these tables, every row, in primary-key order."""
    out: dict[str, list[dict]] = {}
    with engine.connect() as conn:
        for name, cols in columns.items():
            t = table(name, *[column(c) for c in cols])
            pk = inspect(conn).get_pk_constraint(name)["constrained_columns"] or cols[:1]
            out[name] = [dict(r._mapping) for r in conn.execute(
                select(*[t.c[c] for c in cols]).order_by(*[t.c[c] for c in pk]))]
    return out


def only(rows: dict[str, list[dict]], columns: dict[str, list[str]]) -> dict[str, list[dict]]:
    return {t: [{c: r[c] for c in columns[t]} for r in rows[t]] for t in columns}


def test_every_migration_goes_down_and_up_with_data_and_keeps_the_first_tables_rows(
    app_env, client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = app_env.database_url
    seeded = seed_everything(monkeypatch, client=client)
    reset_caches()  # no pooled connection of the app's may hold a lock the DDL needs
    engine = create_engine(url)
    chain = revisions(url)
    assert current(engine) == chain[-1]
    at_head = contents(engine, columns_now(engine))
    empty = sorted(t for t, rows in at_head.items() if not rows)
    # Every table of the schema holds rows, bar those no service here writes to.
    assert set(empty) <= {"login_failures", "judge_previews", "adjudications",
                          "judge_cache", "labeler_reliability"}, empty

    # Down one revision at a time; at each step also go up again and back down, so that
    # every upgrade runs over the data the walk still carries at that point.
    for newer, older in zip(reversed(chain[1:]), reversed(chain[:-1]), strict=True):
        downgrade(url, older)
        assert current(engine) == older
        upgrade(url, newer)
        assert current(engine) == newer
        downgrade(url, older)
    first_columns = columns_now(engine)
    assert {"users", "projects", "items", "responses", "human_labels"} <= set(first_columns)
    expected = only(at_head, first_columns)
    assert contents(engine, first_columns) == expected, "rows changed on the way down"
    for revision in chain[1:]:
        upgrade(url, revision)
        assert current(engine) == revision
    for name, rows in contents(engine, first_columns).items():
        assert rows == expected[name], f"{name} changed on the way back up"
    assert all(expected[t] for t in ("users", "projects", "items", "responses",
                                     "human_labels", "assignments", "import_jobs",
                                     "rules", "rule_sets", "api_tokens", "user_sessions"))

    # Columns added later are derived again on the way up: each item's label count is its
    # labels, and the app reads the project as before.
    with engine.connect() as conn:
        drift = conn.execute(text(
            "SELECT i.id FROM items i WHERE i.label_count <> "
            "(SELECT count(*) FROM human_labels h WHERE h.item_id = i.id)")).all()
        labels = conn.scalar(text("SELECT count(*) FROM human_labels"))
    assert drift == [] and labels == 2 * 9
    # And the tag index is rebuilt from the items' metadata (the generated ones included).
    from app.items.tags import tag_rows

    with engine.connect() as conn:
        items = conn.execute(select(table("items", column("id"), column("project_id"),
                                          column("metadata", JSONType)))).all()
        tags = conn.execute(text("SELECT project_id, item_id, tag FROM item_tags")).all()
    expected_tags = {(p, i, t) for i, p, meta in items for _, t in tag_rows([(i, meta)])}
    assert set(map(tuple, tags)) == expected_tags and len(tags) == len(expected_tags)
    assert {t for *_, t in expected_tags} >= {"seed", "odd", "x", "n0"}
    engine.dispose()
    from app.core.db import session_scope
    from app.labeling.service import project_progress
    from app.models import Project

    with session_scope() as db:
        progress = project_progress(db, project=db.get(Project, seeded.project_id))
    assert (progress.total, progress.done) == (9, 9)  # 9 items, each with its k = 2 labels
