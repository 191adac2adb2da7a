"""Tandem on several web processes: two servers and two workers on one PostgreSQL and Redis,
with nothing kept in a process's memory that another process would need.

Every labeler's requests take the two servers in turn, as a proxy without sticky sessions
would send them: the login form comes from one server and is posted to the other, the
session and its CSRF token made on one are used on the other. A judge run is started
through one server while the labelers work, a snapshot through the other; the workers
build it, and a server serves its file.
"""

from __future__ import annotations

import time

import httpx
import pytest

from bench.common import Backend
from bench.load import LoadConfig, run_load
from tests.support import csrf_from, make_user, start_server, stop_process, write

PASSWORD = "correct-horse-1"
CFG = LoadConfig(labelers=12, submissions=600, k=2, leavers=3, judge_workers=2,
                 web_processes=2, worker_queues="import,export,judge")


def request_snapshot(urls: list[str], ctx: dict) -> dict:
    """While the labelers work: a snapshot asked of the second server, built by a worker,
    its file fetched from the first server (the data folder is shared)."""
    from app.auth.service import create_api_token
    from app.models import Project, User

    def token(db):  # noqa: ANN001, ANN202
        admin = db.get(User, db.get(Project, ctx["project_id"]).created_by_id)
        return create_api_token(db, user=admin, project_id=ctx["project_id"], name="export",
                                scopes=["export"]).secret

    auth = {"Authorization": f"Bearer {write(token)}"}
    base = f"/api/v1/projects/{ctx['project_id']}/snapshots"
    with httpx.Client(timeout=60, headers=auth) as api:
        made = api.post(urls[1] + base, json={"format": "standard"})
        assert made.status_code == 202, made.text
        sid = made.json()["id"]
        deadline = time.monotonic() + 60
        while (body := api.get(f"{urls[1]}{base}/{sid}").json())["status"] not in (
                "succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
        manifest = (api.get(f"{urls[0]}{base}/{sid}/files/manifest.json")
                    if body["status"] == "succeeded" else None)
    return {"status": body["status"], "error": body["error"], "rows": body["rows"],
            "manifest_status": manifest.status_code if manifest is not None else None}


@pytest.mark.worker
@pytest.mark.parametrize("backend", ["postgresql"])
def test_labels_across_two_web_processes_and_two_workers_lose_nothing(app_env, redis_broker,
                                                                      tmp_path) -> None:
    env = redis_broker()
    load = Backend(kind="postgresql", database_url=app_env.database_url,
                   data_dir=app_env.data_dir, env=env)

    out = run_load(load, CFG, tmp_path / "logs", during=request_snapshot)

    assert not out["thread_exceptions"], out["thread_exceptions"]
    assert out["http_5xx"] == 0, out["statuses"]
    # A session or CSRF token that one server did not know would show here as 403s.
    assert not out["errors"], out["errors"]
    assert out["acknowledged"] == CFG.submissions, out["not_saved"]
    sent = out["requests_per_server"]
    assert len(sent) == 2 and min(sent.values()) > 0.4 * sum(sent.values()), sent
    checks = out["invariants"]
    assert checks["acked_stored_exactly_once"] and checks["no_label_without_ack"], checks
    assert checks["labels_stored"] == CFG.submissions
    assert checks["no_item_over_k"] and checks["no_labeler_twice_on_an_item"], checks
    assert checks["leavers_left_holding_a_lease"], out["leavers"]
    assert all(lv["logout_at"] != lv["login_at"] for lv in out["leavers"]), out["leavers"]
    assert checks["no_lease_held_by_a_leaver"], checks["leaver_leases_live"]
    assert checks["judge_runs_succeeded"] and checks["one_ai_label_per_item_per_run"], (
        checks["judge_runs_db"], out["judge_runs"])
    snapshot = out["during"]
    assert snapshot["status"] == "succeeded", snapshot
    assert snapshot["manifest_status"] == 200, snapshot


def _login_attempt(client: httpx.Client, base: str, email: str, password: str) -> httpx.Response:
    page = client.get(f"{base}/login")
    return client.post(f"{base}/login", data={
        "email": email, "password": password, "csrf_token": csrf_from(page.text),
        "next_url": "/projects"}, follow_redirects=False)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_login_limits_and_logout_hold_across_web_processes(app_env, redis_broker,
                                                           tmp_path) -> None:
    env = redis_broker()
    make_user("mallory@example.org")
    make_user("roamer@example.org")
    started = [start_server(env, tmp_path / f"server{i}.log") for i in range(2)]
    a, b = (url for _, url in started)
    try:
        with httpx.Client(timeout=30) as client:
            # Five wrong passwords, split over both servers...
            for i in range(5):
                r = _login_attempt(client, (a, b)[i % 2], "mallory@example.org", "wrong-pw-1")
                assert r.status_code == 401, (i, r.status_code)
            # ...and the sixth try is refused by either, even with the right password.
            for base in (b, a):
                r = _login_attempt(client, base, "mallory@example.org", PASSWORD)
                assert r.status_code == 429, (base, r.status_code)
                assert "Too many failed logins" in r.text

        with httpx.Client(timeout=30) as client:
            assert _login_attempt(client, a, "roamer@example.org", PASSWORD).status_code == 303
            cookies = dict(client.cookies)
            page = client.get(f"{b}/projects")  # the session made on A, on B
            assert page.status_code == 200 and '<span class="who">roamer' in page.text
            csrf = csrf_from(page.text)
            assert client.post(f"{a}/logout", data={"csrf_token": csrf}).status_code == 303
        # The old cookie, sent again to the other server: the session is gone there too.
        with httpx.Client(timeout=30, cookies=cookies) as stale:
            r = stale.get(f"{b}/projects")
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), (
                r.status_code, r.headers)
    finally:
        for server, _ in started:
            stop_process(server)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_big_projects_progress_recount_is_one_for_every_web_process(app_env, redis_broker,
                                                                     tmp_path) -> None:
    """Above the size limit a dashboard serves the last full recount; it lives in the
    database, so both servers show the same numbers, counted at the same moment, and a
    label made since shows on neither until the recount is due."""
    import re

    from app.models import Project
    from tests.support import label_all, make_project, sample_items, wait_for

    env = redis_broker(TANDEM_PROGRESS_RECOUNT_ABOVE_ITEMS="5",
                       TANDEM_PROGRESS_RECOUNT_EVERY_S="3600")
    admin = make_user("admin@example.org", admin=True)
    labeler = make_user("lab@example.org")
    project = make_project(admin, k=1, items=sample_items(12),
                           members={"lab@example.org": "labeler"})
    label_all(project, labeler, lambda t: {"choice": "a", "strength": 1}
              if t.item.external_id in ("item-0", "item-1") else None)
    started = [start_server(env, tmp_path / f"server{i}.log") for i in range(2)]
    a, b = (url for _, url in started)

    def view(client: httpx.Client, base: str) -> tuple[str | None, str]:
        page = client.get(f"{base}/projects/{project.id}/progress")
        assert page.status_code == 200, page.text
        as_of = re.search(r"Counted at (\d\d:\d\d:\d\d)", page.text)
        done = re.search(r"<dt>Done</dt><dd>(\d+)</dd>", page.text)
        return (as_of.group(1) if as_of else None), done.group(1)

    try:
        with httpx.Client(timeout=30) as client:
            assert _login_attempt(client, a, "admin@example.org", PASSWORD).status_code == 303
            assert view(client, a) == (None, "2")  # the first view counts, and stores it
            wait_for(lambda: view(client, b)[0] is not None, timeout=10,
                     what="the recount stored by server A, served by server B")
            first = view(client, b)
            label_all(write(lambda db: db.get(Project, project.id)), labeler,
                      lambda t: {"choice": "b", "strength": 2}
                      if t.item.external_id == "item-2" else None)
            assert view(client, a) == first == view(client, b), "one recount for both"
            assert first[1] == "2", "the label made since waits for the next recount"
    finally:
        for server, _ in started:
            stop_process(server)
