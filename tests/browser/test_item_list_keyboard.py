"""A reviewer walks the item list with the keyboard only: j/k, Enter, n and p."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core.db import get_sessionmaker
from app.models import Item
from tests.support import make_project, make_user, sample_items

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]


def test_move_open_and_page_through_items_with_the_keyboard(web) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    make_user("rev@example.org")
    project = make_project(admin, items=sample_items(12),
                           members={"rev@example.org": "reviewer"})
    with get_sessionmaker()() as db:
        ids = list(db.scalars(select(Item.id).where(Item.project_id == project.id)
                              .order_by(Item.id)))
    page = web.page
    web.login("rev@example.org")
    def on_item(item_id: int) -> None:  # a function, not a string: the CSP forbids eval
        page.wait_for_function("id => document.querySelector('#item-list')?.dataset.selected"
                               " === id", arg=str(item_id))

    page.goto(f"{web.base}/projects/{project.id}/items?limit=5")
    page.wait_for_function("document.body.dataset.itemsReady === '1'")
    selected = "document.querySelector('#item-list').dataset.selected"
    assert page.evaluate(selected) == str(ids[0])
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.evaluate(selected) == str(ids[1])
    assert page.locator("tr.item-row.selected").get_attribute("data-item-id") == str(ids[1])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web.base}/projects/{project.id}/items/{ids[1]}")
    assert page.locator("#item-detail").get_attribute("data-item-id") == str(ids[1])
    assert "Question number 1?" in page.inner_text("#item-detail")

    page.goto(f"{web.base}/projects/{project.id}/items?limit=5")
    page.wait_for_function("document.body.dataset.itemsReady === '1'")
    page.keyboard.press("n")  # the next page, swapped in by htmx
    on_item(ids[5])
    assert "cursor=" in page.url, "the page's address follows, for reload and back"
    page.keyboard.press("n")
    on_item(ids[10])
    rows = page.locator("tr.item-row")
    assert rows.count() == 2 and page.locator("#next-page").count() == 0
    page.keyboard.press("p")
    on_item(ids[5])
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web.base}/projects/{project.id}/items/{ids[6]}")
    assert [e for e in web.console_errors if "favicon" not in e] == []
