"""`tandem serve` runs as many web processes as TANDEM_WEB_WORKERS asks (docker-compose.yml
asks for one per core), on either database, and each of them serves."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import csrf_from, make_user, start_server, stop_process, wait_for


def _children(pid: int) -> list[int]:
    """uvicorn's web processes under its supervisor (not multiprocessing's resource tracker)."""
    try:
        pids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    except OSError:
        return []


def test_serve_starts_the_web_processes_the_setting_asks_for(app_env, tmp_path) -> None:
    make_user("pat@example.com")
    server, base = start_server(dict(app_env.env, TANDEM_WEB_WORKERS="2"),
                                tmp_path / "server.log")
    try:
        wait_for(lambda: len(_children(server.pid)) == 2, timeout=30,
                 what="two web processes")
        # Fresh connections land on either process; each one logs in and gets the page.
        served = 0
        for _ in range(6):
            with httpx.Client(base_url=base, timeout=30) as browser:
                page = browser.get("/login")
                r = browser.post("/login", data={
                    "email": "pat@example.com", "password": "correct-horse-1",
                    "csrf_token": csrf_from(page.text), "next_url": "/projects"},
                    follow_redirects=True)
                assert r.status_code == 200 and "not a member of any project yet" in r.text
                served += 1
        assert served == 6
        assert len(_children(server.pid)) == 2, "a web process died"
    finally:
        stop_process(server)
