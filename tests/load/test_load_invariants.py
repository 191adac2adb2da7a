"""Labeling under load, CI-sized: labelers over real HTTP against the real server, judge runs
in two real Celery workers writing to the same database, some labelers logging out halfway.

The same code as ``python -m bench.load`` (bench/load.py), smaller: what must hold is
asserted here; the latency figures are the bench's to print, not a test's to assert.
"""

from __future__ import annotations

import uuid

import pytest

from bench.common import Backend
from bench.load import LoadConfig, broker_env, forget_broker_keys, run_load
from tests.conftest import REDIS_URL

CONFIGS = {
    # Production's shape: PostgreSQL, Redis broker, judge runs in two workers, two web
    # processes (one per core, as docker-compose.yml runs them).
    "postgresql": LoadConfig(labelers=12, submissions=400, k=2, leavers=2, judge_workers=2,
                             web_workers=2),
    # The embedded default: SQLite file, filesystem broker; nobody may see "database is locked".
    "sqlite": LoadConfig(labelers=8, submissions=200, k=2, leavers=2, judge_workers=2),
}


@pytest.mark.worker
def test_every_label_counts_once_and_leavers_hold_nothing_under_load(backend, app_env,
                                                                     monkeypatch,
                                                                     tmp_path) -> None:
    cfg = CONFIGS[backend]
    env = dict(app_env.env, **broker_env(backend, REDIS_URL))
    env["TANDEM_BROKER_KEY_PREFIX"] = f"t{uuid.uuid4().hex[:8]}:" if backend != "sqlite" else ""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    load = Backend(kind=backend, database_url=app_env.database_url, data_dir=app_env.data_dir,
                   env=env)

    try:
        out = run_load(load, cfg, tmp_path / "logs")
    finally:
        forget_broker_keys(env)

    assert not out["thread_exceptions"], out["thread_exceptions"]
    assert out["http_5xx"] == 0, out["statuses"]
    assert out["locked_seen_by_users"] == 0
    assert not out["errors"], out["errors"]
    assert out["acknowledged"] == cfg.submissions, out["not_saved"]
    checks = out["invariants"]
    assert checks["acked_stored_exactly_once"] and checks["no_label_without_ack"], checks
    assert checks["labels_stored"] == cfg.submissions
    assert checks["no_item_over_k"] and checks["no_labeler_twice_on_an_item"], checks
    assert checks["leavers_left_holding_a_lease"], out["leavers"]
    assert checks["no_lease_held_by_a_leaver"], checks["leaver_leases_live"]
    assert checks["judge_runs_succeeded"] and checks["one_ai_label_per_item_per_run"], (
        checks["judge_runs_db"], out["judge_runs"])
    assert out["judge_calls"] >= 2 * out["items"]  # both orders of every item were asked
