"""A reviewer goes through the AI's labels with the keyboard only."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core.db import get_sessionmaker
from app.models import Response, Review
from tests.judging.fake_openai import FakeOpenAI
from tests.judging.test_reviews import judged_project

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]


def test_approve_override_and_edit_with_the_keyboard(web) -> None:  # noqa: ANN001
    with FakeOpenAI() as fake:
        project = judged_project(fake, items=3, review_fraction=1.0)
    page = web.page
    web.login("rev@example.org", "correct-horse-1")
    page.goto(f"{web.base}/projects/{project.id}/review")
    page.wait_for_function("document.body.dataset.ready === '1'")
    page.wait_for_selector("text=3 to review")
    page.keyboard.press("a")  # approve
    page.wait_for_selector("text=2 to review")
    page.keyboard.press("2")  # the second response is the best: override
    page.wait_for_selector("text=1 to review")
    page.keyboard.press("e")  # edit the preferred response
    page.wait_for_function("document.activeElement.name === 'edit_text'")
    page.keyboard.press("Control+End")
    page.keyboard.type(" Checked by a reviewer.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#review-empty")
    with get_sessionmaker()() as db:
        reviews = list(db.scalars(select(Review).order_by(Review.id)))
        assert [r.action for r in reviews] == ["approve", "override", "edit"]
        edited = db.get(Response, reviews[2].edited_response_id)
        assert edited.text.endswith("Checked by a reviewer.")
    assert [e for e in web.console_errors if "favicon" not in e] == []
