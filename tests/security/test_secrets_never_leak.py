"""Secrets (a judge endpoint's key, passwords, API and training-worker tokens) never show in a
page, a JSON answer, an error, an export file, a log or the database, through a real server
and a real worker, on the paths where they are used: logins, the judge's config, preview and
a run that fails against an unreachable endpoint, snapshots, a training run's reports."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from app.auth.service import create_api_token
from app.judging.prompts import DEFAULT_TEMPLATE
from tests.support import (
    csrf_from,
    free_port,
    label_all,
    make_project,
    make_user,
    sample_items,
    start_server,
    start_worker,
    stop_process,
    wait_for,
    write,
)
from tests.training.broker import take_training_task

pytestmark = [pytest.mark.worker, pytest.mark.parametrize("backend", ["sqlite"])]

MARK = uuid.uuid4().hex[:12]
JUDGE_KEY = f"sk-judge-{MARK}-never-shown"
PASSWORD = f"pw-{MARK}-admin-secret"
WRONG_PASSWORD = f"pw-{MARK}-wrong-guess"


def judge_form(base_url: str, **overrides: str) -> dict[str, str]:
    return {"provider": "openai", "model": "judge-1", "base_url": base_url,
            "api_key_env": "SECTEST_JUDGE_KEY", "template": DEFAULT_TEMPLATE,
            "temperature": "0", "max_tokens": "64", "top_logprobs": "5",
            "confidence_threshold": "0.7", "review_fraction": "0", "max_concurrency": "1",
            "requests_per_minute": "6000", "batch_size": "2", **overrides}


class Seen:
    """Everything the server and workers said, to grep at the end."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, what: str, response: httpx.Response) -> httpx.Response:
        self.texts.append((what, f"{response.status_code} {response.headers} {response.text}"))
        return response


def test_no_secret_appears_anywhere(app_env, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    env = dict(app_env.env, SECTEST_JUDGE_KEY=JUDGE_KEY, TANDEM_JUDGE_MAX_RETRIES="1",
               TANDEM_JUDGE_RETRY_BASE_S="0.1")
    monkeypatch.setenv("SECTEST_JUDGE_KEY", JUDGE_KEY)
    admin = make_user("admin@example.org", password=PASSWORD, admin=True)
    project = make_project(admin, items=sample_items(4))
    label_all(project, admin, lambda t: {"choice": "a", "strength": 2})
    api_token = write(create_api_token, user=admin, project_id=project.id, name="ml",
                      scopes=["export", "read", "judge", "train"]).secret
    bearer = {"Authorization": f"Bearer {api_token}"}
    unreachable = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    seen = Seen()
    p = f"/projects/{project.id}"

    server, base = start_server(env, tmp_path / "server.log")
    worker = start_worker(env, queues="judge,export", log=tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for password in (WRONG_PASSWORD, PASSWORD):
                page = c.get("/login")
                seen.add("login", c.post("/login", data={
                    "email": "admin@example.org", "password": password,
                    "csrf_token": csrf_from(page.text)}))
            csrf = csrf_from(c.get("/projects").text)
            form = {"csrf_token": csrf, **judge_form(unreachable)}
            assert c.post(f"{p}/judge/config", data=form).status_code == 303
            seen.add("judge page", c.get(f"{p}/judge"))
            seen.add("judge api", c.get(f"/api/v1/projects/{project.id}/judge", headers=bearer))
            # The key itself typed where its variable's name belongs: refused, not echoed.
            seen.add("judge key refused", c.post(f"{p}/judge/config", data={
                **form, "api_key_env": JUDGE_KEY}))

            preview = seen.add("preview", c.post(f"{p}/judge/preview", headers={
                "HX-Request": "true"}, data={**form, "preview_external_id": "item-1"}))
            preview_id = preview.text.split('id="preview-', 1)[1].split('"', 1)[0]
            wait_for(lambda: "could not answer" in c.get(f"{p}/judge/previews/{preview_id}").text,
                     timeout=90, what="the preview to fail")
            seen.add("preview failed", c.get(f"{p}/judge/previews/{preview_id}"))

            started = c.post(f"{p}/judge/runs", data={"csrf_token": csrf, "mode": "all"},
                             follow_redirects=False)
            run_url = started.headers["location"]
            run_id = run_url.rsplit("/", 1)[1]
            run_api = f"/api/v1/projects/{project.id}/judge-runs/{run_id}"
            wait_for(lambda: c.get(run_api, headers=bearer).json()["status"]
                     in ("succeeded", "failed"), timeout=120, what="the judge run to end")
            assert c.get(run_api, headers=bearer).json()["counts"]["failed"] == 4
            seen.add("run page", c.get(run_url))
            seen.add("run api", c.get(run_api, headers=bearer))

            made = c.post(f"/api/v1/projects/{project.id}/snapshots", headers=bearer,
                          json={"format": "standard"})
            snap_api = f"/api/v1/projects/{project.id}/snapshots/{made.json()['id']}"
            snap = wait_for(lambda: (s := c.get(snap_api, headers=bearer).json())["status"]
                            == "succeeded" and s, timeout=120, what="the snapshot")
            assert "manifest.json" in snap["files"] and snap["rows"]
            for name in snap["files"]:
                got = seen.add(f"file {name}", c.get(f"{snap_api}/files/{name}", headers=bearer))
                assert got.status_code == 200
            seen.add("export page", c.get(f"{p}/export"))
            seen.add("export.jsonl", c.get(f"{p}/export.jsonl"))

            training = c.post(f"/api/v1/projects/{project.id}/training-runs", headers=bearer,
                              json={"snapshot_id": snap["id"], "base_model": "/models/base"})
            assert training.status_code == 202, training.text
            _, (train_id, attempt, worker_token) = take_training_task()
            as_worker = {"Authorization": f"Bearer {worker_token}"}
            train_api = f"/api/v1/training-runs/{train_id}"
            for step, body in (
                ("claim", {"worker": "gpu-1", "attempt": attempt}),
                ("report", {"attempt": attempt, "points": [{"step": 1, "loss": 0.7}],
                            "log": ["step 1"]}),
                ("finish", {"attempt": attempt, "status": "failed",
                            "error": "CUDA out of memory"}),
            ):
                done = seen.add(step, c.post(f"{train_api}/{step}", headers=as_worker,
                                             json=body))
                assert done.status_code == 200, done.text
            seen.add("training page", c.get(f"{p}/training/{train_id}"))
            seen.add("training api", c.get(
                f"/api/v1/projects/{project.id}/training-runs/{train_id}", headers=bearer))

            seen.add("settings page", c.get(f"{p}/settings"))
            seen.add("404 page", c.get("/projects/999999"))
            seen.add("401 api", c.get("/api/v1/projects", headers={
                "Authorization": f"Bearer {api_token}x"}))
            seen.add("422 api", c.post(f"/api/v1/projects/{project.id}/snapshots",
                                       headers=bearer, json={"format": JUDGE_KEY}))
            c.post("/logout", data={"csrf_token": csrf})
    finally:
        stop_process(worker)
        stop_process(server)
        time.sleep(0.2)

    for name in ("server.log", "worker.log"):
        seen.texts.append((name, (tmp_path / name).read_text(errors="replace")))
    # Files the server and workers wrote (snapshots, checkpoints...); the broker's queue is
    # where a task carries its worker's token to the worker, by design.
    for path in app_env.data_dir.rglob("*"):
        if path.is_file() and "broker" not in path.relative_to(app_env.data_dir).parts:
            seen.texts.append((f"file {path}", path.read_bytes().decode("latin-1")))
    seen.texts.append(("database", dump_database(app_env.database_url)))

    assert "Wrong email or password" in seen.texts[0][1]
    shown = dict(seen.texts)
    # What each secret may show instead: a variable's name, a token's first characters.
    assert "SECTEST_JUDGE_KEY" in shown["judge page"]
    assert api_token[:10] in shown["settings page"]
    assert "CUDA out of memory" in shown["training page"]
    assert "failed login for admin@example.org" in shown["server.log"]
    assert "NAME of the environment variable" in dict(seen.texts)["judge key refused"]
    secrets = {"judge key": JUDGE_KEY, "password": PASSWORD, "wrong password": WRONG_PASSWORD,
               "API token": api_token, "worker token": worker_token}
    leaks = [f"{kind} in {what}" for what, body in seen.texts
             for kind, secret in secrets.items() if secret in body]
    assert leaks == []


def dump_database(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(repr(row) for table in inspect(conn).get_table_names()
                             for row in conn.execute(text(f'SELECT * FROM "{table}"')))
    finally:
        engine.dispose()


def test_the_password_hash_is_argon2id(app_env) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", password=PASSWORD)
    text_dump = dump_database(app_env.database_url)
    assert "$argon2id$" in text_dump and PASSWORD not in text_dump
    assert admin.password_hash.startswith("$argon2id$")
