"""A small world for the authorization tests: two projects with real rows of every kind, the
users of every role, and a logged-in client per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.auth.service import create_api_token
from app.models import ImportJob, JudgePreview, Project, User
from app.projects.schemas import MemberIn
from tests.support import label_all, login, make_project, make_user, sample_items, write

# The roles of the matrix, in the order their calls are made (the allowed ones last).
ROLES = ("anonymous", "outsider", "labeler", "reviewer", "project_admin", "site_admin")


@dataclass
class Rows:
    """Real rows of one project, so that an allowed call never 404s for want of a row."""

    project: Project
    admin: User
    import_job: int
    snapshot_old: int
    snapshot_new: int
    snapshot_queued: int
    file_name: str
    judge_run: int
    preview: int
    training_run: int
    worker_secret: str
    generation: int
    item_external_id: str = "item-0"


@dataclass
class World:
    p: Rows
    q: Rows
    users: dict[str, User]
    clients: dict[str, Any] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)
    spare: int = 0

    def new_member(self, rows: Rows) -> int:
        """A fresh member of ``rows``' project, for a call that removes one."""
        from app.projects.service import add_member

        self.spare += 1
        user = make_user(f"spare{self.spare}-{rows.project.id}@example.org")
        write(lambda db: add_member(db, project=rows.project,
                                    data=MemberIn(email=user.email, role="labeler")))
        return user.id

    def new_token(self, rows: Rows, scopes: tuple[str, ...] = ("read",)) -> int:
        """A fresh token of ``rows``' project, for a call that revokes one."""
        return write(create_api_token, user=rows.admin, project_id=rows.project.id,
                     name="spare", scopes=list(scopes)).token.id


def _choose_first(task) -> dict[str, Any] | None:  # noqa: ANN001
    """Label the first four items (A is better); leave the rest for the labelers' queue."""
    return {"choice": "a", "strength": 2} if int(task.item.external_id[5:]) < 4 else None


def _build_snapshot(project: Project, admin: User, *, build: bool = True) -> int:
    from app.exports.schemas import SnapshotIn
    from app.exports.snapshots import build_snapshot, create_snapshot

    snapshot = write(lambda db: create_snapshot(db, project=project, user=admin,
                                                spec=SnapshotIn(), enqueue=False))
    if build:
        build_snapshot(snapshot_id=snapshot.id)
    return snapshot.id


def populate(project: Project, admin: User) -> Rows:
    """Labels, snapshots, a judge run and preview, a training and a generation run, an
    import job: every kind of row a route names in its path."""
    from app.exports.snapshots import get_snapshot
    from app.generation.schemas import GenerationIn
    from app.generation.service import start_generation
    from app.judging.schemas import RunIn
    from app.judging.service import start_run as start_judge_run
    from app.training.schemas import TrainingRunIn
    from app.training.service import start_run as start_training_run
    from tests.training.broker import take_training_task

    label_all(project, admin, _choose_first, key=f"world-{project.id}")
    old = _build_snapshot(project, admin)
    new = _build_snapshot(project, admin)
    queued = _build_snapshot(project, admin, build=False)
    manifest = write(lambda db: get_snapshot(db, project_id=project.id, snapshot_id=old)
                     .manifest)
    judge_run = write(lambda db: start_judge_run(db, project=project, user=admin,
                                                 data=RunIn()).id)

    def preview(db) -> int:  # noqa: ANN001
        from app.models import Item

        item = db.query(Item).filter_by(project_id=project.id).first()
        row = JudgePreview(project_id=project.id, item_id=item.id, config={}, rendered="x")
        db.add(row)
        db.flush()
        return row.id

    def import_job(db) -> int:  # noqa: ANN001
        row = ImportJob(project_id=project.id, created_by_id=admin.id, filename="old.jsonl",
                        file_format="jsonl", status="succeeded", phase="done")
        db.add(row)
        db.flush()
        return row.id

    training_run = write(lambda db: start_training_run(
        db, project=project, user=admin, data=TrainingRunIn(snapshot_id=old)).id)
    _, (run_id, _, secret) = take_training_task()
    assert run_id == training_run
    generation = write(lambda db: start_generation(db, project=project, user=admin,
                                                   data=GenerationIn()).id)
    return Rows(project=project, admin=admin, import_job=write(import_job),
                snapshot_old=old, snapshot_new=new, snapshot_queued=queued,
                file_name=manifest["files"][0]["name"], judge_run=judge_run,
                preview=write(preview), training_run=training_run, worker_secret=secret,
                generation=generation)


def build_world(client) -> World:  # noqa: ANN001
    """Site admin (a member of neither project), an admin, reviewer and labeler of P, a
    labeler of Q only; a logged-in client for each, and one with no session."""
    from fastapi.testclient import TestClient

    users = {
        "site_admin": make_user("root@example.org", admin=True),
        "project_admin": make_user("padmin@example.org"),
        "reviewer": make_user("rita@example.org"),
        "labeler": make_user("lee@example.org"),
        "outsider": make_user("otto@example.org"),
        "q_admin": make_user("qadmin@example.org"),
        "invitee": make_user("invitee@example.org"),  # whom the members form adds
    }
    p = make_project(users["project_admin"], name="Project P", items=sample_items(8),
                     members={"rita@example.org": "reviewer", "lee@example.org": "labeler"})
    q = make_project(users["q_admin"], name="Project Q", items=sample_items(8),
                     members={"otto@example.org": "labeler"})
    world = World(p=populate(p, users["project_admin"]), q=populate(q, users["q_admin"]),
                  users=users)
    for role in ROLES:
        c = client if role == "anonymous" else TestClient(client.app,
                                                          base_url="http://testserver")
        if role != "anonymous":
            world.csrf[role] = login(c, users[role].email)
        world.clients[role] = c
    return world
