"""Training runs over the API: a worker claims, reports, is cancelled, finishes; a silent
worker's run fails; a restart is a new attempt with a new token."""

from __future__ import annotations

import hashlib
import time

import pytest

from app.auth.service import create_api_token
from tests.exports.test_snapshots import setup_project, snapshot
from tests.support import write
from tests.training.broker import take_training_task


def admin_and_snapshot(client):  # noqa: ANN001, ANN201
    admin, project, export_headers = setup_project(4)
    snap = snapshot(client, export_headers, project.id, format="standard")
    token = write(create_api_token, user=admin, project_id=project.id, name="ml",
                  scopes=["train", "export"]).secret
    return project, snap, {"Authorization": f"Bearer {token}"}


def start(client, headers, project_id: int, **body) -> dict:  # noqa: ANN001, ANN003
    response = client.post(f"/api/v1/projects/{project_id}/training-runs", headers=headers,
                           json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_worker_claims_reports_and_finishes_through_the_api(client) -> None:
    project, snap, admin = admin_and_snapshot(client)
    run = start(client, admin, project.id, snapshot_id=snap["id"], method="dpo",
                base_model="/models/base", hyperparameters={"max_steps": 3})
    assert run["status"] == "queued" and run["hyperparameters"]["max_steps"] == 3
    name, (run_id, attempt, secret) = take_training_task()
    assert (name, run_id, attempt) == ("training.run", run["id"], 1)
    worker = {"Authorization": f"Bearer {secret}"}

    spec = client.post(f"/api/v1/training-runs/{run_id}/claim", headers=worker,
                       json={"worker": "gpu-1", "attempt": 1})
    assert spec.status_code == 200, spec.text
    spec = spec.json()
    assert spec["method"] == "dpo" and spec["base_model"] == "/models/base"
    (data_file,) = spec["snapshot"]["files"]
    body = client.get(data_file["url"], headers=worker).content
    assert hashlib.sha256(body).hexdigest() == data_file["sha256"]
    again = client.post(f"/api/v1/training-runs/{run_id}/claim", headers=worker,
                        json={"worker": "gpu-2", "attempt": 1})
    assert again.status_code == 409  # one worker per attempt
    other = snapshot(client, admin, project.id, format="conversational")
    stolen = client.get(f"/api/v1/projects/{project.id}/snapshots/{other['id']}/files/"
                        "train.jsonl", headers=worker)
    assert stolen.status_code == 403  # only the run's own snapshot
    # The worker's token does a worker's job only: no new runs, snapshots or generations.
    assert client.post(f"/api/v1/projects/{project.id}/training-runs", headers=worker,
                       json={"snapshot_id": snap["id"]}).status_code == 403
    assert client.post(f"/api/v1/projects/{project.id}/snapshots", headers=worker,
                       json={}).status_code == 403
    assert client.post(f"/api/v1/projects/{project.id}/generation-runs", headers=worker,
                       json={}).status_code == 403

    answer = client.post(f"/api/v1/training-runs/{run_id}/report", headers=worker, json={
        "attempt": 1, "log": ["step 1 done"],
        "points": [{"step": 1, "max_steps": 3, "loss": 0.69, "rewards/accuracies": 0.5,
                    "eta_seconds": 4.0}]}).json()
    assert answer == {"cancel": False, "status": "running"}
    odd = client.post(f"/api/v1/training-runs/{run_id}/report", headers=worker, json={
        "attempt": 1, "points": [{"step": "two", "loss": "low", "note": {"x": 1}}]})
    assert odd.status_code == 200  # kept what is a number, dropped the rest
    seen = client.get(f"/api/v1/projects/{project.id}/training-runs/{run_id}",
                      headers=admin).json()
    assert seen["step"] == 1 and seen["percent"] == 33 and seen["latest"]["loss"] == 0.69
    assert seen["metrics"][0]["rewards/accuracies"] == 0.5 and "step 1 done" in seen["log_tail"]

    done = client.post(f"/api/v1/training-runs/{run_id}/finish", headers=worker, json={
        "attempt": 1, "status": "succeeded",
        "checkpoint": {"uri": "/artifacts/run-1", "metrics": {"train_loss": 0.6}}})
    assert done.status_code == 200, done.text
    final = client.get(f"/api/v1/projects/{project.id}/training-runs/{run_id}",
                       headers=admin).json()
    assert final["status"] == "succeeded"
    assert final["checkpoint"]["uri"] == "/artifacts/run-1"
    assert client.get(f"/api/v1/projects/{project.id}/checkpoints",
                      headers=admin).json()[0]["kind"] == "dpo"
    # The attempt's token is revoked once it ends.
    late = client.post(f"/api/v1/training-runs/{run_id}/report", headers=worker,
                       json={"attempt": 1})
    assert late.status_code == 401


def test_cancel_reaches_the_worker_and_a_restart_is_a_new_attempt(client) -> None:
    project, snap, admin = admin_and_snapshot(client)
    run = start(client, admin, project.id, snapshot_id=snap["id"], method="reward")
    _, (run_id, _, secret) = take_training_task()
    worker = {"Authorization": f"Bearer {secret}"}
    client.post(f"/api/v1/training-runs/{run_id}/claim", headers=worker,
                json={"worker": "w", "attempt": 1})
    assert client.post(f"/api/v1/projects/{project.id}/training-runs/{run_id}/cancel",
                       headers=admin).json()["cancel_requested"] is True
    answer = client.post(f"/api/v1/training-runs/{run_id}/report", headers=worker,
                         json={"attempt": 1}).json()
    assert answer["cancel"] is True
    client.post(f"/api/v1/training-runs/{run_id}/finish", headers=worker,
                json={"attempt": 1, "status": "cancelled"})
    restarted = client.post(f"/api/v1/projects/{project.id}/training-runs/{run['id']}/restart",
                            headers=admin)
    assert restarted.status_code == 202 and restarted.json()["attempt"] == 2
    _, (_, attempt, secret2) = take_training_task()
    assert attempt == 2 and secret2 != secret
    old = client.post(f"/api/v1/training-runs/{run_id}/claim", headers=worker,
                      json={"worker": "w", "attempt": 1})
    assert old.status_code == 401
    new = client.post(f"/api/v1/training-runs/{run_id}/claim",
                      headers={"Authorization": f"Bearer {secret2}"},
                      json={"worker": "w", "attempt": 2})
    assert new.status_code == 200


def test_a_silent_worker_fails_the_run_after_the_heartbeat_timeout(
        client, monkeypatch: pytest.MonkeyPatch) -> None:
    project, snap, admin = admin_and_snapshot(client)
    start(client, admin, project.id, snapshot_id=snap["id"])
    _, (run_id, _, secret) = take_training_task()
    client.post(f"/api/v1/training-runs/{run_id}/claim",
                headers={"Authorization": f"Bearer {secret}"}, json={"worker": "w",
                                                                     "attempt": 1})
    monkeypatch.setenv("TANDEM_TRAINING_HEARTBEAT_TIMEOUT_S", "0.5")
    from app.core import config

    config.get_settings.cache_clear()
    time.sleep(1.0)
    seen = client.get(f"/api/v1/projects/{project.id}/training-runs/{run_id}",
                      headers=admin).json()
    assert seen["status"] == "failed" and "no heartbeat" in seen["error"]


def test_bad_requests_say_what_is_wrong(client) -> None:
    project, snap, admin = admin_and_snapshot(client)
    kto = snapshot(client, admin, project.id, format="kto")
    bad = client.post(f"/api/v1/projects/{project.id}/training-runs", headers=admin,
                      json={"snapshot_id": kto["id"]})
    assert bad.status_code == 400 and "preference pairs" in bad.text
    bad = client.post(f"/api/v1/projects/{project.id}/training-runs", headers=admin,
                      json={"snapshot_id": snap["id"], "hyperparameters": {"lr": 1}})
    assert bad.status_code == 400 and "lr" in bad.text
    bad = client.post(f"/api/v1/projects/{project.id}/training-runs", headers=admin,
                      json={"snapshot_id": snap["id"], "method": "ppo"})
    assert bad.status_code == 422
    bad = client.post(f"/api/v1/projects/{project.id}/training-runs", headers=admin,
                      json={"snapshot_id": 999})
    assert bad.status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_queues_a_training_run(client, app_env) -> None:
    import json
    import os
    import subprocess
    import sys

    project, snap, admin = admin_and_snapshot(client)
    env = dict(os.environ, **app_env.env)
    run = subprocess.run([sys.executable, "-m", "app.cli", "train", str(snap["id"]),
                          "--method", "reward", "--set", "max_steps=5", "--set",
                          "learning_rate=2e-5"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout.strip().splitlines()[-1])["training_run"]
    seen = client.get(f"/api/v1/projects/{project.id}/training-runs/{run_id}",
                      headers=admin).json()
    assert seen["method"] == "reward" and seen["status"] == "queued"
    assert seen["hyperparameters"]["max_steps"] == 5
    assert seen["hyperparameters"]["learning_rate"] == 2e-5
    bad = subprocess.run([sys.executable, "-m", "app.cli", "train", str(snap["id"]), "--set",
                          "nope=1"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_the_run_page_draws_live_curves_and_the_log(client) -> None:
    from tests.support import login

    project, snap, admin = admin_and_snapshot(client)
    run = start(client, admin, project.id, snapshot_id=snap["id"])
    _, (run_id, _, secret) = take_training_task()
    worker = {"Authorization": f"Bearer {secret}"}
    client.post(f"/api/v1/training-runs/{run_id}/claim", headers=worker,
                json={"worker": "gpu-7", "attempt": 1})
    client.post(f"/api/v1/training-runs/{run_id}/report", headers=worker, json={
        "attempt": 1, "log": ["loading <model>"],
        "points": [{"step": s, "max_steps": 4, "loss": 0.7 - 0.1 * s,
                    "rewards/accuracies": 0.25 * s, "rewards/margins": 0.1 * s}
                   for s in (1, 2, 3)]})
    login(client, "admin@example.org")
    page = client.get(f"/projects/{project.id}/training/{run['id']}").text
    assert page.count("<polyline") >= 3  # loss, accuracy, margin
    assert "gpu-7" in page and "loading &lt;model&gt;" in page  # the log, escaped
    assert 'hx-trigger="load delay:2s"' in page  # it refreshes itself while running
    overview = client.get(f"/projects/{project.id}/training").text
    assert f"#{run['id']}" in overview and "3/4" in overview
