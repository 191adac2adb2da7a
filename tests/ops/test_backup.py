"""`tandem backup` and `tandem restore` on SQLite and PostgreSQL: a backup taken while a
labeler keeps submitting holds every label that was there when it began, and a backup of an
older schema restores into the current one with every label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.core.migrate import downgrade
from tests.conftest import PG_ADMIN_URL, _pg_url
from tests.migrations.test_migrations_with_data import revisions
from tests.ops.seed import label_set, seed_everything
from tests.support import ROOT, make_user, sample_items, write

SECRET = "pw-that-must-not-show"


@pytest.fixture
def new_database(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases to restore into (PostgreSQL: created here, dropped after)."""
    made: list[str] = []
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'restored-{uuid.uuid4().hex[:8]}.sqlite3'}"
        name = f"tandem_restore_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        # A password in the URL (the server trusts us and ignores it): it must not leak.
        return _pg_url(name).replace("postgres@", f"postgres:{SECRET}@")

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def tandem(env: dict[str, str], url: str, *args: str) -> subprocess.CompletedProcess:
    """The real `tandem` command, in its own process, against the database at ``url``."""
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, **env, "TANDEM_DATABASE_URL": url})
    assert SECRET not in done.stdout + done.stderr
    return done


def at_head(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT version_num FROM alembic_version")) == \
                revisions(url)[-1]
    finally:
        engine.dispose()


def counts(url: str) -> dict[str, object]:
    """What else a restore must bring back, and whether each item's label count (written in
    the same transaction as its labels) agrees with its labels: a torn copy would not."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "ai_labels": conn.scalar(text("SELECT count(*) FROM ai_labels")),
                "reviews": conn.scalar(text("SELECT count(*) FROM reviews")),
                "snapshots": [tuple(r) for r in conn.execute(text(
                    "SELECT id, status, sha256, rows FROM export_snapshots ORDER BY id"))],
                "training_runs": conn.scalar(text("SELECT count(*) FROM training_runs")),
                "drift": conn.execute(text(
                    "SELECT i.id FROM items i WHERE i.label_count <> "
                    "(SELECT count(*) FROM human_labels h WHERE h.item_id = i.id)")).all(),
            }
    finally:
        engine.dispose()


class Labeler(threading.Thread):
    """Keeps taking and labeling items until told to stop."""

    def __init__(self, project, user) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.project, self.user = project, user
        self.stop = threading.Event()
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from app.labeling import service
        from app.labeling.schemas import LabelIn

        try:
            while not self.stop.is_set():
                task = write(service.next_task, project=self.project, user=self.user)
                if task is None:
                    return
                write(service.submit_label, project=self.project, user=self.user,
                      data=LabelIn(item_id=task.item.id, choice="b", strength=1,
                                   idempotency_key=f"cat-{self.written:06d}"))
                self.written += 1
                self.stop.wait(0.01)  # a brisk human, not a tight loop hogging the CPUs
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc


def test_a_backup_taken_while_labels_are_written_restores_every_label_there_before(
    app_env, monkeypatch: pytest.MonkeyPatch, new_database, tmp_path: Path,
) -> None:
    from app.items.service import import_file
    from app.models import Project, User
    from app.projects.schemas import MemberIn
    from app.projects.service import add_member
    from tests.support import wait_for

    seeded = seed_everything(monkeypatch)
    cat = make_user("cat@example.org")

    def more_work(db):  # noqa: ANN001, ANN202
        project = db.get(Project, seeded.project_id)
        add_member(db, project=project, data=MemberIn(email=cat.email, role="labeler"))
        data = "\n".join(json.dumps(i) for i in sample_items(600, start=100)).encode()
        import_file(db, project=project, user=db.get(User, seeded.admin_id), data=data,
                    filename="more.jsonl", file_format="jsonl")
        return project

    project = write(more_work)
    labeler = Labeler(project, cat)
    labeler.start()
    backup = tmp_path / "tandem.bak"
    try:
        wait_for(lambda: labeler.written >= 5 or labeler.error, timeout=60,
                 what="the labeler to get going")
        before = label_set()  # committed before the backup began
        written_before = labeler.written
        made = tandem(app_env.env, app_env.database_url, "backup", str(backup))
        assert made.returncode == 0, made.stderr
        wait_for(lambda: labeler.written >= written_before + 10 or labeler.error, timeout=60,
                 what="more labels after the backup")
    finally:
        labeler.stop.set()
        labeler.join(timeout=60)
    assert labeler.error is None, repr(labeler.error)
    everything = label_set()
    assert len(everything) > len(before) + 10  # labels kept coming while it ran

    target = new_database()
    restored = tandem(app_env.env, target, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert at_head(target)
    got = label_set(target)
    assert before <= got <= everything  # all that was there, nothing invented
    assert {email for _, email, *_ in got} >= {"ann@example.org", "bob@example.org"}
    restored_counts = counts(target)
    assert restored_counts["drift"] == []  # one consistent moment, not a torn copy
    original = counts(app_env.database_url)
    for key in ("ai_labels", "reviews", "snapshots", "training_runs"):
        assert restored_counts[key] == original[key], key
    assert restored_counts["ai_labels"] > 0 and restored_counts["snapshots"][0][1] == "succeeded"


def test_a_backup_of_an_older_schema_restores_into_the_current_one(
    app_env, monkeypatch: pytest.MonkeyPatch, new_database, tmp_path: Path,
) -> None:
    seed_everything(monkeypatch)
    labels = label_set()
    assert len(labels) == 18
    head_backup = tmp_path / "head.bak"
    assert tandem(app_env.env, app_env.database_url, "backup", str(head_backup)).returncode == 0

    # A copy of the database as an older Tandem had it: one revision before head.
    older = new_database()
    assert tandem(app_env.env, older, "restore", str(head_backup)).returncode == 0
    downgrade(older, revisions(older)[-2])
    assert not at_head(older)
    old_backup = tmp_path / "older.bak"
    made = tandem(app_env.env, older, "backup", str(old_backup))
    assert made.returncode == 0, made.stderr

    target = new_database()
    restored = tandem(app_env.env, target, "restore", str(old_backup))
    assert restored.returncode == 0, restored.stderr
    assert at_head(target) and label_set(target) == labels

    # A database with tables is overwritten only when asked.
    refused = tandem(app_env.env, older, "restore", str(head_backup))
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert not at_head(older)  # untouched
    forced = tandem(app_env.env, older, "restore", "--force", str(head_backup))
    assert forced.returncode == 0, forced.stderr
    assert at_head(older) and label_set(older) == labels


def test_restore_refuses_a_backup_of_the_other_kind(app_env, new_database,
                                                    tmp_path: Path) -> None:
    junk = tmp_path / "notes.bak"
    junk.write_bytes(b"just some text, no database")
    refused = tandem(app_env.env, new_database(), "restore", str(junk))
    assert refused.returncode != 0 and "not a Tandem backup" in refused.stderr
