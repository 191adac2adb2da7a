"""Script and HTML planted in every user-supplied text never runs, in headless chromium.

A project whose name, instructions, rules, prompts (text and chat), responses, AI label
rationale, reviewer notes, labeler names, metadata and tags all carry classic payloads is
shown on every page that shows them; the labeler then works through the labeling flow and
clicks the planted Markdown link. Each payload would set ``window.__pwned`` (or open a
dialog) if it ran. The browser context bypasses the Content-Security-Policy, so what is
checked here is the escaping and the Markdown sanitiser themselves; a second test checks
that the CSP would stop inline script on its own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

# The browser fixtures live in tests/browser/conftest.py; this folder has none of its own.
from tests.browser.conftest import PASSWORD, live_server, web  # noqa: F401
from tests.support import write

if TYPE_CHECKING:
    from tests.browser.conftest import Web

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "<svg onload=window.__pwned=1>",
    "[x](javascript:window.__pwned=1)",
    '"><iframe srcdoc="<script>parent.__pwned=1</script>">',
    "{{7*7}} {% raw %}{{ config }}{% endraw %} ${7*7}",  # template injection
    "' style=\"background:url(javascript:window.__pwned=1)\" onmouseover='window.__pwned=1' x='",
    '<a href="javascript:window.__pwned=1" id="planted-link">click</a>',
    "<script>alert(1)</script><img src=x onerror=alert(2)>",
]
ALL = " ".join(PAYLOADS)
ADMIN, LABELER, REVIEWER = "admin@example.org", "lab@example.org", "rev@example.org"


def _record(n: int, *, history: bool) -> dict:
    record = {
        "external_id": f"x-{n}",
        "prompt": [{"role": "system", "content": ALL},
                   {"role": "user", "content": f"{PAYLOADS[n % len(PAYLOADS)]} {ALL}"}],
        "responses": [{"text": f"{p} [x](javascript:window.__pwned=1)", "model": p}
                      for p in PAYLOADS[:3]],
        "metadata": {"note": ALL, "tags": [ALL, "<b>t</b>"], ALL[:40]: ALL},
    }
    if history:
        record.update({
            "tandem": 1,
            "labels": [
                {"labeler": LABELER, "task_type": "ranking", "ranking": [0, 1, 2],
                 "rationale": ALL},
                {"labeler": "other@example.org", "task_type": "ranking", "ranking": [2, 1, 0],
                 "rationale": ALL},
            ],
            "ai_labels": [{"ranking": [1, 0, 2], "preference": 0.6, "confidence": 0.55,
                           "rationale": ALL, "route": "review",
                           "rule_verdicts": {"0": {"honest": 0.2}},
                           "run": {"config": {"model": ALL}},
                           "reviews": []}],
            "adjudications": [],
        })
    return record


def _world() -> dict[str, int]:
    """Admin, labeler and reviewer (names are payloads); a ranking project full of payloads,
    with AI labels waiting for review, conflicting human labels and a built snapshot."""
    from sqlalchemy import func, select

    from app.auth.service import create_user
    from app.exports.schemas import SnapshotIn
    from app.exports.snapshots import build_snapshot, create_snapshot
    from app.items.service import import_file
    from app.models import Item
    from app.projects.schemas import MemberIn, ProjectIn, RuleIn
    from app.projects.service import add_member, create_project

    def build(db) -> dict[str, int]:  # noqa: ANN001
        admin = create_user(db, email=ADMIN, name=ALL, password=PASSWORD, is_admin=True)
        create_user(db, email=LABELER, name=PAYLOADS[1], password=PASSWORD)
        create_user(db, email=REVIEWER, name=PAYLOADS[0], password=PASSWORD)
        project = create_project(db, data=ProjectIn(
            name=ALL[:200], task_type="ranking", overlap_k=2, instructions_md=ALL + "\n\n"
            + "\n".join(f"- {p}" for p in PAYLOADS), gold_rate=0,
            rules=[RuleIn(id="honest", text=ALL[:2000]), RuleIn(id="polite", text=PAYLOADS[1])]),
            creator=admin)
        add_member(db, project=project, data=MemberIn(email=LABELER, role="labeler"))
        add_member(db, project=project, data=MemberIn(email=REVIEWER, role="reviewer"))
        records = [_record(n, history=True) for n in range(3)] + [
            _record(n, history=False) for n in range(3, 6)]
        data = "\n".join(json.dumps(r) for r in records).encode()
        report = import_file(db, project=project, user=admin, data=data,
                             filename="payloads.jsonl", file_format="jsonl")
        assert report.ok, report.as_dict()
        snapshot = create_snapshot(db, project=project, user=admin, spec=SnapshotIn(),
                                   enqueue=False)
        first = db.scalar(select(func.min(Item.id)).where(Item.project_id == project.id))
        return {"project": project.id, "snapshot": snapshot.id, "item": first}

    ids = write(build)
    build_snapshot(snapshot_id=ids["snapshot"])
    return ids


def _page_for(browser) -> object:  # noqa: ANN001
    """A page whose context ignores the CSP, with a dialog and error recorder."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    return page


def _assert_inert(page, where: str) -> None:  # noqa: ANN001
    page.wait_for_load_state("load")
    page.wait_for_timeout(150)  # onerror/onload handlers fire right after load
    assert page.evaluate("typeof window.__pwned") == "undefined", f"a payload ran on {where}"
    assert page.dialogs == [], f"a payload opened a dialog on {where}: {page.dialogs}"
    # Nothing planted became live markup: no extra scripts, handlers, frames or js: links.
    live = page.evaluate("""() => ({
        scripts: [...document.scripts].map(s => s.src || 'inline:' + s.text.slice(0, 40))
                 .filter(s => !/\\/static\\/(vendor\\/htmx\\.min|app|items)\\.js$/.test(s)),
        handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
                  .filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name)),
        frames: document.querySelectorAll('iframe, object, embed').length,
        jsLinks: [...document.querySelectorAll('[href], [src], [action], [formaction]')]
                 .map(e => e.getAttribute('href') || e.getAttribute('src')
                        || e.getAttribute('action') || e.getAttribute('formaction'))
                 .filter(u => /^\\s*javascript:/i.test(u)),
        styled: [...document.querySelectorAll('[style]')].map(e => e.outerHTML.slice(0, 300)),
    })""")
    assert live == {"scripts": [], "handlers": [], "frames": 0, "jsLinks": [], "styled": []}, \
        f"{where}: {live}"


def _login(page, base: str, email: str) -> None:  # noqa: ANN001
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{base}/projects")


def test_payloads_in_every_user_text_never_run_in_the_browser(web: Web) -> None:  # noqa: F811
    ids = _world()
    pid, base = ids["project"], web.base
    browser = web.page.context.browser
    admin = _page_for(browser)
    _login(admin, base, ADMIN)
    _assert_inert(admin, "the project list")
    assert "<script>" in admin.inner_text("body"), "the payload shows, as text"
    for path in ("", "/settings", "/import", "/export", f"/snapshots/{ids['snapshot']}",
                 "/judge", "/training", "/gold", "/analytics", "/review", "/adjudicate",
                 "/progress", "/items", "/items?tag=%3Cb%3Et%3C%2Fb%3E", "/items-count",
                 f"/items/{ids['item']}"):
        admin.goto(f"{base}/projects/{pid}{path}")
        _assert_inert(admin, f"/projects/{pid}{path}")
        if path == "/review":
            assert admin.locator("#review-form").count() == 1, "the AI label is on review"

    labeler = _page_for(browser)
    _login(labeler, base, LABELER)
    labeler.goto(f"{base}/projects/{pid}")
    labeler.click("#start-labeling")
    labeler.wait_for_url(f"{base}/projects/{pid}/label")
    labeler.wait_for_function("document.body.dataset.ready === '1'")
    for n in range(3):
        labeler.wait_for_selector("#label-form .response")
        _assert_inert(labeler, f"the label page, item {n + 1}")
        # The Markdown link in a response: sanitised to a link without a target.
        links = labeler.locator("#label-form .markdown a")
        if links.count():
            links.first.click()
            _assert_inert(labeler, f"the label page after a click, item {n + 1}")
        assert labeler.url.startswith(f"{base}/projects/{pid}/label")
        labeler.fill("textarea[name=rationale]", ALL)
        before = labeler.get_attribute("#label-form", "data-item-id")
        labeler.click("#submit-label")
        labeler.wait_for_function(
            "prev => { const f = document.querySelector('#label-form');"
            " return !f || f.dataset.itemId !== prev; }", arg=before)
        _assert_inert(labeler, f"the label page after submit {n + 1}")

    from sqlalchemy import select

    from app.core.db import get_sessionmaker
    from app.models import HumanLabel, User

    with get_sessionmaker()() as db:
        lab = db.scalar(select(User).where(User.email == LABELER))
        stored = list(db.scalars(select(HumanLabel.rationale).where(
            HumanLabel.user_id == lab.id, HumanLabel.assignment_id.is_not(None))))  # not imported
    assert stored == [ALL] * 3, "the labeler's payload rationales were stored as plain text"


def test_the_csp_alone_blocks_inline_script(web: Web) -> None:  # noqa: F811
    page = web.page
    response = page.goto(f"{web.base}/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # Plant inline script and an inline handler as an injection would; the CSP stops both.
    page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__pwned = 1';
        document.body.appendChild(s);
        const i = document.createElement('img');
        i.setAttribute('onerror', 'window.__pwned = 2');
        i.src = 'data:,not-an-image';
        document.body.appendChild(i);
    }""")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert any("Content Security Policy" in e or "inline" in e for e in web.console_errors), \
        web.console_errors
