"""The demo the README's first command makes: a project ready to label, made once."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from app.demo.seed import ADMIN, DEMO_NAME, LABELERS, seed_demo
from app.models import Item, Project, ProjectMember
from tests.support import login, write


def test_the_demo_is_made_once_and_ready_to_label(client, db) -> None:  # noqa: ANN001
    first = write(seed_demo)
    again = write(seed_demo)
    assert first.created and not again.created and again.project_id == first.project_id
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Project)
                     .where(Project.name == DEMO_NAME)) == 1
    items = list(db.scalars(select(Item).where(Item.project_id == first.project_id)))
    assert len(items) == 50
    chats = [i for i in items if isinstance(i.prompt, list)]
    assert len(chats) >= 10 and all(len(i.prompt) >= 2 for i in chats), "multi-turn chats"
    assert db.scalar(select(func.count()).select_from(ProjectMember)
                     .where(ProjectMember.project_id == first.project_id)) >= 3

    # The labeler logs in with the printed password and gets an item at once.
    csrf = login(client, LABELERS[0][0], LABELERS[0][2])
    task = client.post(f"/projects/{first.project_id}/label/next",
                       data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert task.status_code == 200 and 'name="item_id"' in task.text
    client.post("/logout", data={"csrf_token": csrf})

    # The admin finds the demo's coding items by their tag.
    login(client, ADMIN[0], ADMIN[2])
    coding = {i.id for i in items if i.meta["topic"].startswith("coding")}
    page = client.get(f"/projects/{first.project_id}/items", params={"tag": "coding"})
    assert page.status_code == 200
    listed = {int(x) for x in re.findall(r'href="/projects/\d+/items/(\d+)"', page.text)}
    assert listed == coding and len(coding) == 13
