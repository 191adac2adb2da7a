"""Real training workers: a DPO run and a reward-model run go from queued to succeeded
through a Celery worker on the `train` queue that reaches the server only over HTTP; a
killed worker's run fails after the heartbeat timeout."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from app.auth.service import create_api_token
from app.exports.schemas import SnapshotIn
from app.exports.snapshots import build_snapshot, create_snapshot
from tests.exports.test_snapshots import rate, rated_items
from tests.items.test_import_jobs import log_tail
from tests.support import (
    label_all,
    make_project,
    make_user,
    start_server,
    start_worker,
    stop_process,
    wait_for,
    write,
)

pytestmark = [pytest.mark.worker, pytest.mark.parametrize("backend", ["postgresql"])]
TINY = {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 128,
        "learning_rate": 1e-3}


@pytest.fixture
def cluster(redis_broker, tmp_path: Path):  # noqa: ANN001, ANN201
    """The web server and a training worker, sharing PostgreSQL and a Redis broker."""
    env = redis_broker(TANDEM_ARTIFACTS_DIR=str(tmp_path / "artifacts"),
               TANDEM_TRAINING_HEARTBEAT_S="1", TANDEM_TRAINING_HEARTBEAT_TIMEOUT_S="4",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="2")
    server, base = start_server(env, tmp_path / "server.log")
    env["TANDEM_BASE_URL"] = base
    log = tmp_path / "trainer.log"
    worker = start_worker(env, queues="train", log=log, app="worker.training.main")
    try:
        yield base, worker, log
    finally:
        stop_process(worker)
        stop_process(server)


def project_with_snapshot():  # noqa: ANN201
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="rate_and_edit", items=rated_items(8))
    label_all(project, admin, rate)
    snap = write(create_snapshot, project=project, user=admin,
                 spec=SnapshotIn(format="conversational"), enqueue=False)
    build_snapshot(snapshot_id=snap.id)
    token = write(create_api_token, user=admin, project_id=project.id, name="ml",
                  scopes=["train"]).secret
    return project, snap.id, {"Authorization": f"Bearer {token}"}


def wait_run(base: str, headers: dict, project_id: int, run_id: int, worker, log: Path,  # noqa: ANN001
             until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout: float = 240) -> dict:
    def done() -> dict | None:
        run = httpx.get(f"{base}/api/v1/projects/{project_id}/training-runs/{run_id}",
                        headers=headers, timeout=10).json()
        return run if run["status"] in until else None

    try:
        return wait_for(done, timeout=timeout, interval=1, what=f"training run {run_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{log_tail(log, 6000)}") from None


def test_dpo_and_reward_runs_succeed_on_a_real_training_worker(cluster, tiny_models) -> None:
    base, worker, log = cluster
    project, snapshot_id, headers = project_with_snapshot()
    for method, model in (("dpo", "causal-lm"), ("reward", "reward-model")):
        made = httpx.post(f"{base}/api/v1/projects/{project.id}/training-runs", headers=headers,
                          json={"snapshot_id": snapshot_id, "method": method,
                                "base_model": str(tiny_models[model]), "hyperparameters": TINY},
                          timeout=30)
        assert made.status_code == 202, made.text
        run = wait_run(base, headers, project.id, made.json()["id"], worker, log)
        assert run["status"] == "succeeded", (run["error"], run["log_tail"])
        assert run["step"] == 2 and run["metrics"] and "loss" in run["metrics"][-1]
        checkpoint = Path(run["checkpoint"]["uri"])
        assert (checkpoint / "config.json").exists() and (checkpoint / "README.md").exists()
        card = (checkpoint / "README.md").read_text()
        assert "snapshot" in card.lower() and str(snapshot_id) in card
        config = json.loads((checkpoint / "config.json").read_text())
        want = "LlamaForCausalLM" if method == "dpo" else "LlamaForSequenceClassification"
        assert config["architectures"] == [want]
        checkpoint_id = run["checkpoint"]["id"]

    # The reward model comes back as the judge: it scores each response, position-free.
    from app.judging import service as judging
    from app.judging.prompts import DEFAULT_TEMPLATE
    from app.judging.schemas import JudgeConfigIn, RunIn
    from app.models import AiLabel
    from tests.judging.test_judge_runs import run_inline

    write(judging.update_config, project=project, data=JudgeConfigIn(
        provider="reward", model=f"checkpoint:{checkpoint_id}", template=DEFAULT_TEMPLATE,
        judge_rules=False, batch_size=4))
    judge_run = write(judging.start_run, project=project, user=None, data=RunIn())
    run_inline(judge_run.id)
    from app.core.db import session_scope

    with session_scope() as db:
        labels = db.query(AiLabel).filter_by(run_id=judge_run.id).all()
        assert len(labels) == 8
        for label in labels:
            assert label.consistent  # sigmoid(r_a - r_b) in one order, 1 - that in the other
            for pair in label.pairs:
                assert abs(pair["p_a_first"] - pair["p_a_second"]) < 1e-6


def test_a_killed_training_worker_fails_the_run_after_the_heartbeat_timeout(
        cluster, tiny_models) -> None:
    base, worker, log = cluster
    project, snapshot_id, headers = project_with_snapshot()
    made = httpx.post(f"{base}/api/v1/projects/{project.id}/training-runs", headers=headers,
                      json={"snapshot_id": snapshot_id, "method": "dpo",
                            "base_model": str(tiny_models["causal-lm"]),
                            "hyperparameters": {**TINY, "max_steps": 100_000}}, timeout=30)
    run_id = made.json()["id"]
    running = wait_run(base, headers, project.id, run_id, worker, log, until=("running",))
    assert running["worker"]
    wait_run(base, headers, project.id, run_id, worker, log, until=("running",))
    wait_for(lambda: httpx.get(f"{base}/api/v1/projects/{project.id}/training-runs/{run_id}",
                               headers=headers).json()["step"] > 0, timeout=120, interval=1,
             what="the first training step")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    failed = wait_run(base, headers, project.id, run_id, worker, log, until=("failed",),
                      timeout=60)
    assert "no heartbeat" in failed["error"]
    restarted = httpx.post(f"{base}/api/v1/projects/{project.id}/training-runs/{run_id}/restart",
                           headers=headers, timeout=30)
    assert restarted.status_code == 202 and restarted.json()["attempt"] == 2
