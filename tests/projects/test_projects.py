"""Admins create projects, edit rules (new versions), add members and watch progress."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.labeling import service
from app.labeling.schemas import LabelIn
from app.models import Project, ProjectMember, Rule, RuleSet
from tests.support import login, make_project, make_user, sample_items, write


def test_admin_creates_a_project_with_rules_and_edits_make_new_versions(client, db) -> None:
    make_user("admin@example.org", admin=True)
    csrf = login(client, "admin@example.org")
    created = client.post("/projects", data={
        "csrf_token": csrf, "name": "Helpfulness", "task_type": "ranking",
        "instructions_md": "Rank **best** first", "overlap_k": "3", "lease_minutes": "10",
        "rules_text": "honest: Says nothing false\nNo insults"}, follow_redirects=False)
    assert created.status_code == 303
    project = db.scalar(select(Project))
    assert (project.name, project.task_type, project.overlap_k) == ("Helpfulness", "ranking", 3)
    rules = db.scalars(select(Rule).order_by(Rule.position)).all()
    assert [(r.key, r.text) for r in rules] == [("honest", "Says nothing false"),
                                                ("R2", "No insults")]
    settings = {"csrf_token": csrf, "name": "Helpfulness", "instructions_md": "",
                "overlap_k": "3", "lease_minutes": "10",
                "rules_text": "honest: Says nothing false\nR2: No insults"}
    client.post(f"/projects/{project.id}/settings", data=settings)
    db.rollback()  # end the read transaction: see what the server committed
    assert db.scalar(select(RuleSet.version).order_by(RuleSet.version.desc())) == 1  # same rules
    client.post(f"/projects/{project.id}/settings",
                data={**settings, "rules_text": "honest: Says nothing false\nR2: Be kind"})
    db.rollback()
    assert [v for v in db.scalars(select(RuleSet.version).order_by(RuleSet.version))] == [1, 2]


def test_bad_project_input_is_a_clear_400(client, db) -> None:
    make_user("admin@example.org", admin=True)
    csrf = login(client, "admin@example.org")
    response = client.post("/projects", data={"csrf_token": csrf, "name": " ",
                                              "task_type": "essay", "overlap_k": "0"})
    assert response.status_code == 400
    assert "name" in response.text and "task_type" in response.text
    assert db.scalar(select(Project)) is None


def test_only_site_admins_create_projects(client) -> None:
    make_user("lee@example.org")
    csrf = login(client, "lee@example.org")
    response = client.post("/projects", data={"csrf_token": csrf, "name": "x",
                                              "task_type": "pairwise"})
    assert response.status_code == 403


def test_admin_adds_members_with_roles(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("rev@example.org")
    project = make_project(admin)
    csrf = login(client, "admin@example.org")
    client.post(f"/projects/{project.id}/members",
                data={"csrf_token": csrf, "email": "REV@example.org", "role": "reviewer"})
    unknown = client.post(f"/projects/{project.id}/members",
                          data={"csrf_token": csrf, "email": "nobody@example.org",
                                "role": "labeler"})
    assert unknown.status_code == 404 and "No user with the email" in unknown.text
    roles = {m.role for m in db.scalars(select(ProjectMember))}
    assert roles == {"admin", "reviewer"}


def test_progress_counts_done_in_progress_and_to_do(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    lee = make_user("lee@example.org")
    project = make_project(admin, k=1, items=sample_items(4),
                           members={"lee@example.org": "labeler"})
    task = write(service.next_task, project=project, user=lee)
    write(service.submit_label, project=project, user=lee,
          data=LabelIn(item_id=task.item.id, idempotency_key="k" * 12, choice="tie"))
    write(service.next_task, project=project, user=lee)  # leased, not yet labeled
    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}").text
    stats = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", page))
    assert stats == {"Items": "4", "Done": "1", "In progress": "1", "To do": "2"}
    assert "lee@example.org" in page and "25% done" in page


def test_instructions_markdown_is_sanitized(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    csrf = login(client, "admin@example.org")
    client.post(f"/projects/{project.id}/settings", data={
        "csrf_token": csrf, "name": "<img src=x onerror=alert(1)>", "overlap_k": "1",
        "lease_minutes": "5", "rules_text": "",
        "instructions_md": "**Bold** <script>alert(1)</script> [x](javascript:alert(1))"})
    page = client.get(f"/projects/{project.id}").text
    assert "<strong>Bold</strong>" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert 'href="javascript' not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_labeler_cannot_reach_another_projects_api(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    make_project(admin, name="Mine", members={"lee@example.org": "labeler"})
    other = make_project(admin, name="Other")
    login(client, "lee@example.org")
    assert client.get(f"/api/v1/projects/{other.id}").status_code == 404
    assert client.get(f"/api/v1/projects/{other.id}/export").status_code == 404
    assert [p["name"] for p in client.get("/api/v1/projects").json()] == ["Mine"]


def test_rules_carry_a_severity_and_a_severity_change_is_a_new_version(client, db) -> None:
    from app.projects.schemas import format_rules, parse_rules_text

    rules = parse_rules_text("safe [high]: No dangerous advice\nkind: Be kind\nplain text rule")
    assert [(r.id, r.severity) for r in rules] == [("safe", "high"), ("kind", "medium"),
                                                   ("R3", "medium")]
    make_user("admin@example.org", admin=True)
    csrf = login(client, "admin@example.org")
    client.post("/projects", data={"csrf_token": csrf, "name": "P", "task_type": "pairwise",
                                   "rules_text": "safe [high]: No dangerous advice"})
    project = db.scalar(select(Project))
    page = client.get(f"/projects/{project.id}/settings").text
    assert "safe [high]: No dangerous advice" in page
    client.post(f"/projects/{project.id}/settings", data={
        "csrf_token": csrf, "name": "P", "overlap_k": "1", "lease_minutes": "30",
        "rules_text": "safe [low]: No dangerous advice"})
    db.rollback()
    assert db.scalars(select(RuleSet.version).order_by(RuleSet.version)).all() == [1, 2]
    assert format_rules(db.scalars(select(Rule).order_by(Rule.id.desc()).limit(1)).all()) == \
        "safe [low]: No dangerous advice"
