"""Ranking and rate-and-edit labeling, and the import page, in headless chromium.

The server and the page come from conftest.py (``web``); each test arranges its own project
in-process and checks what was stored against the same SQLite file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from tests.support import make_project, make_user

if TYPE_CHECKING:
    from tests.browser.conftest import Web

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]

ADMIN = "admin@example.org"
LABELER = "ranker@example.org"
PASSWORD = "correct-horse-1"

# The panel was swapped for the next item and app.js has initialised it (see the keyboard test).
SWAPPED = """prev => {
  const f = document.querySelector('#label-form');
  const n = document.querySelector('#label-notice');
  return !!f && f.dataset.itemId !== prev && !!f.querySelector('.response.selected')
      && !!n && n.textContent.trim() === 'Saved.';
}"""
# The last label was taken: the panel says the queue is empty.
DONE = """() => {
  const n = document.querySelector('#label-notice');
  return !document.querySelector('#label-form') && !!document.querySelector('#queue-empty')
      && !!n && n.textContent.trim() === 'Saved.';
}"""
RANKING = "document.querySelector('#label-form input[name=ranking]').value"


def _items(n: int, texts: list[str]) -> list[dict]:
    return [{"external_id": f"item-{i}", "prompt": f"Question number {i}?",
             "responses": [{"text": f"Answer {t} to question {i}.", "model": f"m{j}"}
                           for j, t in enumerate(texts)]}
            for i in range(n)]


def _labeling_project(task_type: str, items: list[dict]):  # noqa: ANN202
    admin = make_user(ADMIN, admin=True)
    labeler = make_user(LABELER, password=PASSWORD)
    project = make_project(admin, task_type=task_type, k=1, members={LABELER: "labeler"},
                           items=items)
    return project, labeler


def _responses(item_id: int):  # noqa: ANN202
    from app.core.db import get_sessionmaker
    from app.models import Response

    with get_sessionmaker()() as db:
        return list(db.scalars(select(Response).where(Response.item_id == item_id)
                               .order_by(Response.position, Response.id)))


def _labels(user_id: int):  # noqa: ANN202
    from app.core.db import get_sessionmaker
    from app.models import HumanLabel

    with get_sessionmaker()() as db:
        return list(db.scalars(select(HumanLabel).where(HumanLabel.user_id == user_id)
                               .order_by(HumanLabel.id)))


def _real_errors(errors: list[str]) -> list[str]:
    return [e for e in errors if "favicon" not in e]


def test_ranking_with_keyboard_and_drag_and_drop(web: Web) -> None:
    project, labeler = _labeling_project("ranking", _items(2, ["w", "x", "y", "z"]))
    web.login(LABELER)
    web.start_labeling(project.id)
    page = web.page

    # Item 1, keyboard only: select the last response, move it to the top, submit.
    first = page.get_attribute("#label-form", "data-item-id")
    w, x, y, z = (r.id for r in _responses(int(first)))
    for key in ["j", "j", "j", "Shift+K", "Shift+K", "Shift+K"]:
        page.keyboard.press(key)
    assert page.evaluate(RANKING) == f"{z},{w},{x},{y}"
    assert page.get_attribute("#ranking-list .response.selected", "data-response-id") == str(z)
    page.keyboard.press("Enter")
    page.wait_for_function(SWAPPED, arg=first)

    # Item 2, mouse: drag the third response onto the first, then click Submit.
    second = page.get_attribute("#label-form", "data-item-id")
    assert second != first
    ids = [r.id for r in _responses(int(second))]
    cards = page.locator("#ranking-list li.response")
    assert cards.count() == 4
    cards.nth(2).drag_to(cards.nth(0), source_position={"x": 8, "y": 8},
                         target_position={"x": 8, "y": 4})  # the upper half: drop before it
    assert page.evaluate(RANKING).split(",")[0] == str(ids[2]), page.evaluate(RANKING)
    page.click("#submit-label")
    page.wait_for_function(DONE)

    one, two = _labels(labeler.id)
    assert (one.item_id, two.item_id) == (int(first), int(second))
    assert one.ranking == [z, w, x, y]
    assert two.ranking[0] == ids[2]
    assert sorted(two.ranking) == sorted(ids) and len(two.ranking) == 4
    print(f"ranking after the drag: {two.ranking} (responses in order: {ids})")
    assert _real_errors(web.console_errors) == []


def test_rate_and_edit_saves_the_edit_as_a_new_linked_response(web: Web) -> None:
    from app.core.db import get_sessionmaker
    from app.models import Response
    from app.models.items import ResponseSource

    project, labeler = _labeling_project("rate_and_edit", _items(1, ["a", "b"]))
    web.login(LABELER)
    web.start_labeling(project.id)
    page = web.page
    item_id = int(page.get_attribute("#label-form", "data-item-id"))
    a, b = _responses(item_id)

    page.keyboard.press("6")  # rate A (selected first)
    page.keyboard.press("j")
    page.keyboard.press("2")  # rate B
    page.keyboard.press("e")  # open B's editor, focus its textarea
    editor = page.locator(f"textarea[data-edit-for='{b.id}']")
    page.wait_for_function("id => document.activeElement?.dataset?.editFor === String(id)",
                           arg=b.id)
    assert editor.input_value() == b.text  # the "e" did not land in the text
    page.keyboard.press("Control+End")
    page.keyboard.type(" Thanks!")
    page.keyboard.press("Escape")  # leave the textarea, so Enter submits
    assert page.evaluate("document.activeElement === document.body")
    assert page.is_checked(f"input[name=rating_{a.id}][value='6']")
    assert page.is_checked(f"input[name=rating_{b.id}][value='2']")
    page.keyboard.press("Enter")
    page.wait_for_function(DONE)

    [label] = _labels(labeler.id)
    assert label.item_id == item_id
    assert label.ratings == {str(a.id): 6, str(b.id): 2}
    with get_sessionmaker()() as db:
        edits = list(db.scalars(select(Response).where(
            Response.source == ResponseSource.HUMAN_EDIT)))
    assert len(edits) == 1
    edit = edits[0]
    assert edit.item_id == item_id
    assert edit.parent_response_id == b.id
    assert edit.text == (b.text + " Thanks!").strip()
    assert edit.created_by_id == labeler.id
    assert label.edited_response_id == edit.id
    assert _real_errors(web.console_errors) == []


def _item_count(project_id: int) -> int:
    from app.core.db import get_sessionmaker
    from app.models import Item

    with get_sessionmaker()() as db:
        return db.scalar(select(func.count(Item.id)).where(Item.project_id == project_id))


def test_import_page_uploads_a_file_and_shows_the_report(web: Web, tmp_path: Path) -> None:
    admin = make_user(ADMIN, admin=True)
    project = make_project(admin)
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"external_id": f"up-{i}", "prompt": f"Prompt {i}?",
                                        "responses": [f"One {i}.", f"Two {i}."]}) + "\n"
                            for i in range(3)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"external_id": "new-1", "prompt": "P?", "responses": ["a", "b"]})
                   + "\n{not json\n"
                   + json.dumps({"external_id": "new-3", "prompt": "Q?", "responses": ["c", "d"]})
                   + "\n")

    web.login(ADMIN)
    page = web.page
    page.goto(f"{web.base}/projects/{project.id}/import")
    page.wait_for_function("document.body.dataset.ready === '1'")
    page.evaluate("window.__marker = 1")  # gone if the page reloads

    page.set_input_files("#import-form input[type=file]", str(good))
    page.click("#import-form button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#import-result #import-report')?.textContent"
        ".includes('Imported 3 new items')")
    assert page.evaluate("window.__marker") == 1
    assert page.url == f"{web.base}/projects/{project.id}/import"
    assert _item_count(project.id) == 3

    page.set_input_files("#import-form input[type=file]", str(bad))
    page.click("#import-form button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#import-result #import-report')?.textContent"
        ".includes('Nothing was imported')")
    assert page.evaluate("window.__marker") == 1
    rows = page.locator("#import-report table tbody tr")
    assert rows.count() == 1
    assert rows.nth(0).locator("td").nth(0).inner_text().strip() == "2"
    print(f"report for the bad line: {rows.nth(0).inner_text()!r}")
    assert _item_count(project.id) == 3
    # The refused file answers 422, which chromium logs as a failed resource load.
    assert [e for e in _real_errors(web.console_errors)
            if not ("status of 422" in e and e.endswith(f"/projects/{project.id}/import"))] == []
