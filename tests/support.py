"""Helpers shared by the tests: settings reset, logins, factories, worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class AppEnv:
    database_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)


def reset_caches() -> None:
    """Forget cached settings, engines and the Celery app, so new env vars take effect."""
    from app.core import celery, config, db

    try:
        db.get_engine().dispose()
    except Exception:  # noqa: BLE001 (no engine could be built: nothing to dispose)
        pass
    for cached in (config.get_settings, db.get_engine, db._write_engine, db.get_sessionmaker,
                   celery.get_celery):
        cached.cache_clear()


def write(fn, **kwargs):  # noqa: ANN001, ANN201
    """Run ``fn(db, **kwargs)`` in its own committed write transaction."""
    from app.core.db import session_scope

    with session_scope(write=True) as db:
        result = fn(db, **kwargs)
        db.flush()
        return result


def make_user(email: str, *, password: str = "correct-horse-1", admin: bool = False):  # noqa: ANN201
    from app.auth.service import create_user

    return write(create_user, email=email, name=email.split("@")[0], password=password,
                 is_admin=admin)


def make_project(admin, *, task_type: str = "pairwise", k: int = 1, lease_minutes: int = 30,  # noqa: ANN001, ANN201
                 rules: list[tuple[str, str]] | None = None, members: dict[str, str] | None = None,
                 items: list[dict[str, Any]] | None = None, name: str = "Test project"):
    import json

    from app.items.service import import_file
    from app.projects.schemas import MemberIn, ProjectIn, RuleIn
    from app.projects.service import add_member, create_project

    def build(db):  # noqa: ANN001, ANN202
        project = create_project(db, data=ProjectIn(
            name=name, task_type=task_type, overlap_k=k, lease_minutes=lease_minutes,
            rules=[RuleIn(id=i, text=t) for i, t in (rules or [])]), creator=admin)
        for email, role in (members or {}).items():
            add_member(db, project=project, data=MemberIn(email=email, role=role))
        if items:
            data = "\n".join(json.dumps(i) for i in items).encode()
            report = import_file(db, project=project, user=admin, data=data, filename="t.jsonl",
                                 file_format="jsonl")
            assert report.ok, report.as_dict()
        return project

    return write(build)


def sample_items(n: int, *, responses: int = 2, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"external_id": f"item-{i}", "prompt": f"Question number {i}?",
         "responses": [{"text": f"Answer {j} to question {i}.", "model": f"m{j}"}
                       for j in range(responses)]}
        for i in range(start, start + n)
    ]


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, email: str, password: str = "correct-horse-1") -> str:  # noqa: ANN001
    """Log in through the real form; returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": csrf_from(page.text),
                                           "next_url": "/projects"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/projects").text)


def start_worker(env: dict[str, str], *, queues: str = "import,export",
                 log: Path | None = None, app: str = "worker.main") -> subprocess.Popen:
    """A real Celery worker process, with this test's settings (``app`` names the entry:
    worker.training.main for a training worker)."""
    full_env = dict(os.environ, **env)
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
             "--pool", "solo", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    finally:
        if log:
            out.close()  # the child has its own copy; ours would leak (ResourceWarning)
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.2, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def label_all(project, user, decide, *, key: str = "key") -> int:  # noqa: ANN001
    """Take every item the queue gives ``user`` and label it with ``decide(task)`` -> the
    LabelIn fields (None skips the item); returns how many were labeled."""
    from app.labeling import service
    from app.labeling.schemas import LabelIn

    n = 0
    while True:
        task = write(service.next_task, project=project, user=user)
        if task is None:
            return n
        fields = decide(task)
        if fields is None:
            write(service.skip_item, project=project, user=user, item_id=task.item.id)
            continue
        n += 1
        write(service.submit_label, project=project, user=user,
              data=LabelIn(item_id=task.item.id, idempotency_key=f"{key}-{user.id}-{n:05d}",
                           **fields))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m app.cli serve`` on a free port with these settings, once it answers."""
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port)], cwd=ROOT, env=dict(os.environ, **env), stdout=out,
            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: server.poll() is not None or healthy(), timeout=30,
                 what="the server to answer /healthz")
        assert server.poll() is None, log.read_text()
    except BaseException:
        stop_process(server)
        raise
    return server, base
