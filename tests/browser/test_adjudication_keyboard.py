"""A reviewer settles labelers' conflicts with the keyboard only."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core.db import get_sessionmaker
from app.models import Adjudication, ItemConsensus
from tests.support import label_all, make_project, make_user, sample_items

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]


def test_pick_a_winner_skip_and_tie_with_the_keyboard(web) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    bob = make_user("bob@example.org")
    project = make_project(admin, k=2, items=sample_items(3),
                           members={"bob@example.org": "labeler"})
    label_all(project, admin, lambda t: {"choice": "a", "strength": 2})
    label_all(project, bob, lambda t: {"choice": "b", "strength": 2})  # every item conflicts
    page = web.page
    web.login("admin@example.org", "correct-horse-1")
    page.goto(f"{web.base}/projects/{project.id}/adjudicate")
    page.wait_for_function("document.body.dataset.ready === '1'")
    page.wait_for_selector("text=3 to adjudicate")
    page.keyboard.press("2")  # B is best
    page.wait_for_selector("text=2 to adjudicate")
    page.keyboard.press("s")  # skip this one for now
    page.wait_for_selector("text=Skipped for now.")
    page.keyboard.press("t")  # a tie
    page.wait_for_selector("#adjudication-empty")
    with get_sessionmaker()() as db:
        decisions = list(db.scalars(select(Adjudication).order_by(Adjudication.id)))
        assert len(decisions) == 2 and decisions[1].ranking is None
        statuses = sorted(c.status for c in db.scalars(select(ItemConsensus)))
        assert statuses == ["conflict", "decided", "tie"]
    assert [e for e in web.console_errors if "favicon" not in e] == []
