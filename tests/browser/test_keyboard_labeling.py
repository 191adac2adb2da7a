"""A labeler works through the pairwise queue with the keyboard, in headless chromium.

The real server runs as a subprocess on the test's SQLite file; the test arranges data and
checks the stored labels in-process, against the same file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.support import (
    ROOT, AppEnv, make_project, make_user, sample_items, stop_process, wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LABELER = "lab@example.org"
PASSWORD = "correct-horse-1"

# The panel was swapped for the next item, and app.js has initialised it (initPanel selects
# the first response), so htmx has processed the new form and keys go to the new item.
SWAPPED = """prev => {
  const f = document.querySelector('#label-form');
  const n = document.querySelector('#label-notice');
  return !!f && f.dataset.itemId !== prev && !!f.querySelector('.response.selected')
      && !!n && n.textContent.trim() === 'Saved.';
}"""


@dataclass
class Live:
    page: object
    base: str
    project_id: int
    labeler_id: int
    console_errors: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def live(app_env: AppEnv, tmp_path: Path) -> Iterator[Live]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    admin = make_user("admin@example.org", admin=True)
    labeler = make_user(LABELER, password=PASSWORD)
    project = make_project(admin, k=1, rules=[("honest", "No false claims"),
                                              ("polite", "No insults")],
                           members={LABELER: "labeler"}, items=sample_items(5))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=dict(os.environ, **app_env.env), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: server.poll() is not None or _healthy(f"{base}/healthz"), timeout=30,
                 what="the server to answer /healthz")
        assert server.poll() is None, log.read_text()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(10_000)
                live = Live(page=page, base=base, project_id=project.id, labeler_id=labeler.id)
                page.on("console", lambda m: m.type == "error" and live.console_errors.append(
                    f"{m.text} @ {m.location.get('url', '')}"))
                page.on("pageerror", lambda e: live.console_errors.append(f"pageerror: {e}"))
                _login_and_start(live)
                yield live
            finally:
                browser.close()
    except BaseException:
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        stop_process(server)


def _login_and_start(live: Live) -> None:
    page = live.page
    page.goto(f"{live.base}/login")
    page.fill("input[name=email]", LABELER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{live.base}/projects")
    page.goto(f"{live.base}/projects/{live.project_id}")
    page.focus("#start-labeling")  # into the queue by keyboard: focus the button, press Enter
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live.base}/projects/{live.project_id}/label")
    page.wait_for_function("document.body.dataset.ready === '1'")
    page.wait_for_selector("#label-form .response.selected")


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
