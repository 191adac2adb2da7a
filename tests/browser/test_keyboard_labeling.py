"""A labeler works through the pairwise queue with the keyboard, in headless chromium.

The real server runs as a subprocess on the test's SQLite file; the test arranges data and
checks the stored labels in-process, against the same file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

if TYPE_CHECKING:  # the `live` fixture and its Live are in conftest.py
    from tests.browser.conftest import Live

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]

# The panel was swapped for the next item, and app.js has initialised it (initPanel selects
# the first response), so htmx has processed the new form and keys go to the new item.
SWAPPED = """prev => {
  const f = document.querySelector('#label-form');
  const n = document.querySelector('#label-notice');
  return !!f && f.dataset.itemId !== prev && !!f.querySelector('.response.selected')
      && !!n && n.textContent.trim() === 'Saved.';
}"""


def _label(page, keys: list[str]) -> int:  # noqa: ANN001
    """Press keys on the current item, submit with Enter, wait for the next one."""
    item_id = page.get_attribute("#label-form", "data-item-id")
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_function(SWAPPED, arg=item_id)
    return int(item_id)


def _labels(user_id: int):  # noqa: ANN202
    from app.core.db import get_sessionmaker
    from app.models import HumanLabel

    with get_sessionmaker()() as db:
        return list(db.scalars(select(HumanLabel).where(HumanLabel.user_id == user_id)
                               .order_by(HumanLabel.id)))


def _real_errors(errors: list[str]) -> list[str]:
    return [e for e in errors if "favicon" not in e]


def test_labeling_three_items_with_the_keyboard_only(live: Live) -> None:
    from app.core.db import get_sessionmaker
    from app.models import Response

    page = live.page
    first = _label(page, ["1", "r", "2"])  # A clearly better; A breaks rule 2 (polite)
    second = _label(page, ["j", "5"])  # select B (nothing to do with the scale); B clearly
    third = _label(page, ["3"])  # tie

    labels = _labels(live.labeler_id)
    assert [lb.item_id for lb in labels] == [first, second, third]
    assert len({first, second, third}) == 3
    with get_sessionmaker()() as db:
        a = db.scalars(select(Response).where(Response.item_id == first)
                       .order_by(Response.position)).first()
    one, two, three = labels
    assert (one.choice, one.strength) == ("a", 2)
    assert one.response_a_id == a.id
    assert one.rule_violations == {str(a.id): ["polite"]}
    assert (two.choice, two.strength, two.rule_violations) == ("b", 2, {})
    assert (three.choice, three.strength, three.rule_violations) == ("tie", None, {})
    assert all(lb.time_spent_ms > 0 for lb in labels), [lb.time_spent_ms for lb in labels]
    assert _real_errors(live.console_errors) == []


def test_double_clicking_submit_stores_one_label(live: Live) -> None:
    page = live.page
    submits: list[str] = []
    done: list[str] = []
    page.on("request", lambda r: r.url.endswith("/label/submit") and submits.append(r.url))
    page.on("requestfinished", lambda r: r.url.endswith("/label/submit") and done.append(r.url))
    page.on("requestfailed", lambda r: r.url.endswith("/label/submit") and done.append(r.url))

    item_id = int(page.get_attribute("#label-form", "data-item-id"))
    page.keyboard.press("2")  # A slightly better
    page.dblclick("#submit-label")
    page.wait_for_function(SWAPPED, arg=str(item_id))
    page.wait_for_timeout(500)  # let a second request, if the double click sent one, land
    for _ in range(100):  # (sleeping would not pump Playwright's events; waiting does)
        if len(done) == len(submits):
            break
        page.wait_for_timeout(100)
    assert 1 <= len(submits) == len(done), (submits, done)
    print(f"submit requests sent by the double click: {len(submits)}")

    labels = _labels(live.labeler_id)
    assert [(lb.item_id, lb.choice, lb.strength) for lb in labels] == [(item_id, "a", 1)]
    assert page.locator("#flash").inner_text().strip() == ""
    assert _real_errors(live.console_errors) == []
