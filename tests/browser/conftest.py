"""Browser fixtures: the real server as a subprocess on the test's SQLite file, and a page of
headless chromium pointed at it. Tests arrange data and check what was stored in-process,
against the same file.

``web`` is a logged-out page on a running server; ``live`` is the pairwise labeling session
of test_keyboard_labeling (a project of 5 items, its labeler logged in, labeling started).
When a test fails, the tail of the server's log is added to its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import (
    AppEnv,
    make_project,
    make_user,
    sample_items,
    start_server,
    stop_process,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LABELER = "lab@example.org"
PASSWORD = "correct-horse-1"

SERVER_LOG = pytest.StashKey[Path]()


@dataclass
class Web:
    """A chromium page and the base URL of the server it talks to."""

    page: object
    base: str
    console_errors: list[str] = field(default_factory=list)

    def login(self, email: str, password: str = PASSWORD) -> None:
        page = self.page
        page.goto(f"{self.base}/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(f"{self.base}/projects")

    def start_labeling(self, project_id: int) -> None:
        """From the project page into the queue by keyboard; wait for app.js and the task."""
        page = self.page
        page.goto(f"{self.base}/projects/{project_id}")
        page.focus("#start-labeling")  # focus the button, press Enter
        page.keyboard.press("Enter")
        page.wait_for_url(f"{self.base}/projects/{project_id}/label")
        page.wait_for_function("document.body.dataset.ready === '1'")
        page.wait_for_selector("#label-form .response.selected")


@dataclass
class Live:
    page: object
    base: str
    project_id: int
    labeler_id: int
    console_errors: list[str] = field(default_factory=list)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    report = yield
    log = item.stash.get(SERVER_LOG, None)
    if report.failed and log is not None and log.exists():
        report.sections.append(("server log (tail)", log.read_text(errors="replace")[-5000:]))
    return report


@pytest.fixture
def live_server(request: pytest.FixtureRequest, app_env: AppEnv, tmp_path: Path) -> Iterator[str]:
    """``python -m app.cli serve`` on a free port, with this test's settings; its base URL."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}")
    log = tmp_path / "server.log"
    request.node.stash[SERVER_LOG] = log
    server, base = start_server(app_env.env, log)
    try:
        yield base
    finally:
        stop_process(server)


@pytest.fixture
def web(live_server: str) -> Iterator[Web]:
    """A fresh headless chromium page (logged out) on the live server; console errors and
    uncaught page errors are collected in ``web.console_errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            web = Web(page=page, base=live_server)
            page.on("console", lambda m: m.type == "error" and web.console_errors.append(
                f"{m.text} @ {m.location.get('url', '')}"))
            page.on("pageerror", lambda e: web.console_errors.append(f"pageerror: {e}"))
            yield web
        finally:
            browser.close()


@pytest.fixture
def live(request: pytest.FixtureRequest, app_env: AppEnv) -> Live:
    """A pairwise project of 5 items (k=1, two rules); its labeler logged in and labeling."""
    admin = make_user("admin@example.org", admin=True)
    labeler = make_user(LABELER, password=PASSWORD)
    project = make_project(admin, k=1, rules=[("honest", "No false claims"),
                                              ("polite", "No insults")],
                           members={LABELER: "labeler"}, items=sample_items(5))
    web: Web = request.getfixturevalue("web")
    web.login(LABELER, PASSWORD)
    web.start_labeling(project.id)
    return Live(page=web.page, base=web.base, project_id=project.id, labeler_id=labeler.id,
                console_errors=web.console_errors)
