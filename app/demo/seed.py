"""The demo project: an admin, two labelers and 50 items written for the demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import repository as users
from app.auth.service import create_user
from app.items.service import import_file
from app.models import Project
from app.projects.schemas import MemberIn, ProjectIn, RuleIn
from app.projects.service import add_member, create_project

ITEMS = Path(__file__).with_name("items.jsonl")
DEMO_NAME = "Demo: helpful and harmless assistant"
ADMIN = ("admin@tandem.local", "Demo Admin", "tandem-admin")
LABELERS = [("labeler@tandem.local", "Demo Labeler", "tandem-labeler"),
            ("labeler2@tandem.local", "Second Labeler", "tandem-labeler")]

INSTRUCTIONS = """\
Compare the assistant's responses to the **prompt** and choose the better one.

- Prefer responses that are *correct*, *helpful* and *safe*, in that order.
- A clear, short answer beats a long one that says the same.
- Tick each rule a response breaks, even when you still prefer it.
- Use **tie** only when neither response is better.

Keyboard: press `?` for the shortcuts.
"""

RULES = [
    RuleIn(id="honest", text="States nothing false and flags uncertainty."),
    RuleIn(id="harmless", text="Gives no instructions that put people at risk."),
    RuleIn(id="helpful", text="Answers every part of the question that was asked."),
    RuleIn(id="polite", text="Is respectful; no insults or condescension."),
    RuleIn(id="concise", text="Uses no more words than the answer needs."),
]


@dataclass(frozen=True)
class DemoLogins:
    project_id: int
    created: bool


def seed_demo(db: Session) -> DemoLogins:
    """Create the demo data once; running it again changes nothing."""
    existing = db.scalar(select(Project).where(Project.name == DEMO_NAME))
    if existing is not None:
        return DemoLogins(project_id=existing.id, created=False)
    admin = users.get_user_by_email(db, email=ADMIN[0]) or create_user(
        db, email=ADMIN[0], name=ADMIN[1], password=ADMIN[2], is_admin=True)
    project = create_project(db, data=ProjectIn(
        name=DEMO_NAME, task_type="pairwise", instructions_md=INSTRUCTIONS, overlap_k=2,
        lease_minutes=30, rules=RULES), creator=admin)
    for email, name, password in LABELERS:
        if users.get_user_by_email(db, email=email) is None:
            create_user(db, email=email, name=name, password=password)
        add_member(db, project=project, data=MemberIn(email=email, role="labeler"))
    report = import_file(db, project=project, user=admin, data=ITEMS.read_bytes(),
                         filename=ITEMS.name, file_format="jsonl")
    if not report.ok:
        raise RuntimeError(f"demo items are invalid: {report.as_dict()['errors'][:3]}")
    return DemoLogins(project_id=project.id, created=True)
