"""Reviewers approve, override or edit AI labels; the export filters by label source."""

from __future__ import annotations

import json
import re

from sqlalchemy import update

from app.judging import service
from app.judging.prompts import DEFAULT_TEMPLATE
from app.judging.schemas import JudgeConfigIn, RunIn
from app.labeling.schemas import LabelIn
from app.labeling.service import next_task, submit_label
from app.models import Item, Response, Review, User
from app.projects.schemas import MemberIn
from app.projects.service import add_member
from tests.judging.fake_openai import FakeOpenAI, completion
from tests.judging.test_judge_runs import run_inline
from tests.support import login, make_project, make_user, sample_items, write


def judged_project(fake: FakeOpenAI, *, items: int, review_fraction: float):  # noqa: ANN201
    """A project whose AI judge confidently prefers response A on every item."""
    admin = make_user("admin@example.org", admin=True)
    make_user("rev@example.org")
    project = make_project(admin, items=sample_items(items),
                           members={"rev@example.org": "reviewer"})
    fake.default = None
    for _ in range(items):
        fake.script.append(("json", completion("A", logprobs={"A": 0.95, "B": 0.05})))
        fake.script.append(("json", completion("B", logprobs={"B": 0.95, "A": 0.05})))
    write(service.update_config, project=project, data=JudgeConfigIn(
        provider="openai", model="judge-1", base_url=fake.base_url, template=DEFAULT_TEMPLATE,
        batch_size=1, max_concurrency=1, judge_rules=False, review_fraction=review_fraction))
    run_inline(write(service.start_run, project=project, user=admin, data=RunIn()).id)
    return project


def post_review(client, project_id: int, csrf: str, page: str, **fields) -> str:  # noqa: ANN001, ANN003
    data = {"csrf_token": csrf,
            "ai_label_id": re.search(r'name="ai_label_id" value="(\d+)"', page).group(1),
            "idempotency_key": re.search(r'name="idempotency_key" value="(\w+)"', page).group(1),
            "skip": "", **fields}
    response = client.post(f"/projects/{project_id}/review", data=data,
                           headers={"HX-Request": "true"})
    assert response.status_code == 200, response.text
    return response.text


def test_reviewer_approves_overrides_and_edits(client, app_env, db) -> None:
    with FakeOpenAI() as fake:
        project = judged_project(fake, items=3, review_fraction=1.0)
    csrf = login(client, "rev@example.org")
    page = client.get(f"/projects/{project.id}/review").text
    assert "3 to review" in page and "the judge's choice" in page
    page = post_review(client, project.id, csrf, page, action="approve")
    assert "Review saved." in page and "2 to review" in page
    second_best = re.findall(r'name="best_response_id" value="(\d+)"', page)[1]
    page = post_review(client, project.id, csrf, page, best_response_id=second_best)
    page = post_review(client, project.id, csrf, page, action="edit",
                       edit_text="A much better answer.")
    assert "Nothing left to review" in page
    db.rollback()
    reviews = db.query(Review).order_by(Review.id).all()
    assert [r.action for r in reviews] == ["approve", "override", "edit"]
    assert reviews[1].ranking[0] == int(second_best)
    edited = db.get(Response, reviews[2].edited_response_id)
    assert edited.source == "human_edit" and edited.text == "A much better answer."

    login(client, "admin@example.org")
    export = client.get(f"/projects/{project.id}/export.jsonl?source=ai_reviewed").text
    rows = [json.loads(line) for line in export.splitlines()]
    assert len(rows) == 4  # approve 1, override 1, edit: edit>parent and the judge's pair
    assert rows[1]["chosen"] == "Answer 1 to question 1."  # the reviewer's choice
    assert {"chosen": "A much better answer.", "rejected": "Answer 0 to question 2.",
            "prompt": "Question number 2?"} in rows
    assert client.get(f"/projects/{project.id}/export.jsonl?source=human").text == ""
    bad = client.get(f"/projects/{project.id}/export.jsonl?source=robots")
    assert bad.status_code == 400 and "source must be" in bad.text


def test_a_double_submitted_review_is_one_review(client, app_env, db) -> None:
    with FakeOpenAI() as fake:
        project = judged_project(fake, items=2, review_fraction=1.0)
    csrf = login(client, "rev@example.org")
    page = client.get(f"/projects/{project.id}/review").text
    post_review(client, project.id, csrf, page, action="approve")
    post_review(client, project.id, csrf, page, action="approve")
    db.rollback()
    assert db.query(Review).count() == 1


def test_accepted_ai_labels_are_exported_as_ai_accepted(client, app_env) -> None:
    with FakeOpenAI() as fake:
        project = judged_project(fake, items=2, review_fraction=0.0)
    login(client, "admin@example.org")
    accepted = client.get(f"/projects/{project.id}/export.jsonl?source=ai_accepted").text
    assert [json.loads(x)["chosen"] for x in accepted.splitlines()] == [
        "Answer 0 to question 0.", "Answer 0 to question 1."]
    page = client.get(f"/projects/{project.id}/export").text
    assert "AI accepted 2" in page


def test_labelers_cannot_review(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"})
    login(client, "lee@example.org")
    assert client.get(f"/projects/{project.id}/review").status_code == 403


def test_the_judge_page_shows_agreement_with_humans(client, app_env) -> None:
    with FakeOpenAI() as fake:
        project = judged_project(fake, items=2, review_fraction=0.0)  # the judge prefers A
    admin = write(lambda db: db.query(User).filter_by(email="admin@example.org").one())
    # Put the AI-accepted items back in the human queue, so a person labels them too.
    write(lambda db: db.execute(update(Item).values(ai_accepted=False, in_queue=True)))
    for n, choice in enumerate(("a", "b")):
        task = write(next_task, project=project, user=admin)
        write(submit_label, project=project, user=admin, data=LabelIn(
            item_id=task.item.id, idempotency_key=f"agree-{n:08d}", choice=choice, strength=2))
    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}/judge").text
    assert "Items both labeled</dt><dd>2<" in page
    assert '<dd id="agreement-percent">50%</dd>' in page


def test_labelers_see_the_ai_verdict_only_when_suggestions_are_on(client, app_env) -> None:
    with FakeOpenAI() as fake:
        project = judged_project(fake, items=1, review_fraction=0.0)
        make_user("lee@example.org")
        write(lambda db: db.execute(update(Item).values(ai_accepted=False, in_queue=True)))
        write(add_member, project=project, data=MemberIn(email="lee@example.org",
                                                        role="labeler"))
        csrf = login(client, "lee@example.org")
        blind = client.post(f"/projects/{project.id}/label/next", data={"csrf_token": csrf},
                            headers={"HX-Request": "true"}).text
        assert "AI suggests" not in blind
        write(service.update_config, project=project, data=JudgeConfigIn(
            provider="openai", model="judge-1", base_url=fake.base_url,
            template=DEFAULT_TEMPLATE, show_suggestions=True))
        shown = client.post(f"/projects/{project.id}/label/next", data={"csrf_token": csrf},
                            headers={"HX-Request": "true"}).text
        assert re.search(r"AI suggests:\s*<strong>A</strong>\s*\(P = 0.95\)", shown)


def test_a_later_judge_run_does_not_undo_a_reviewers_decision(client, app_env, db) -> None:
    from app.consensus.service import refresh
    from app.models import ItemConsensus

    with FakeOpenAI() as fake:
        project = judged_project(fake, items=1, review_fraction=1.0)
        csrf = login(client, "rev@example.org")
        page = client.get(f"/projects/{project.id}/review").text
        second = re.findall(r'name="best_response_id" value="(\d+)"', page)[1]
        post_review(client, project.id, csrf, page, best_response_id=second)
        # The judge runs again and, confident as ever, prefers the first response.
        fake.script.append(("json", completion("A", logprobs={"A": 0.95, "B": 0.05})))
        fake.script.append(("json", completion("B", logprobs={"B": 0.95, "A": 0.05})))
        write(service.update_config, project=project, data=JudgeConfigIn(
            provider="openai", model="judge-1", base_url=fake.base_url,
            template=DEFAULT_TEMPLATE, batch_size=1, max_concurrency=1, judge_rules=False,
            review_fraction=0.0))
        run_inline(write(service.start_run, project=project, user=None, data=RunIn()).id)
    refresh(project.id)
    db.rollback()
    row = db.query(ItemConsensus).one()
    assert row.source == "ai_reviewed" and row.ranking[0] == int(second)
