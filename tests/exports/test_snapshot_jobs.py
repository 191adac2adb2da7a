"""A snapshot made from the export page is built by a real Celery worker, on Redis and
PostgreSQL, while the page's progress partial polls it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.exports.test_snapshots import rate, rated_items
from tests.items.test_import_jobs import log_tail
from tests.support import (
    AppEnv,
    label_all,
    login,
    make_project,
    make_user,
    start_worker,
    stop_process,
    wait_for,
)


@pytest.mark.worker
@pytest.mark.parametrize("backend", ["postgresql"])
def test_snapshot_from_the_page_is_built_by_the_worker(
    request: pytest.FixtureRequest, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    worker_env = request.getfixturevalue("redis_broker")()
    client = request.getfixturevalue("client")  # built after the env changes
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="rate_and_edit", items=rated_items(30))
    label_all(project, admin, rate)
    log = tmp_path / "worker.log"
    proc = start_worker(worker_env, queues="export", log=log)
    try:
        csrf = login(client, "admin@example.org")
        page = client.post(f"/projects/{project.id}/snapshots", data={
            "csrf_token": csrf, "format": "standard", "container": "parquet",
            "sources": ["human"], "margin": "on", "test_fraction": "0.2", "seed": "7",
            "min_agreement": "", "tag": ""}, follow_redirects=True)
        assert page.status_code == 200, page.text
        snapshot_id = int(re.search(r'id="snapshot-(\d+)"', page.text).group(1))
        assert 'hx-trigger="load delay:1s"' in page.text  # the page polls until it is done

        def finished() -> str | None:
            assert proc.poll() is None, f"worker exited:\n{log_tail(log)}"
            part = client.get(f"/projects/{project.id}/snapshots/{snapshot_id}",
                              headers={"HX-Request": "true"}).text
            return part if "succeeded" in part or "failed" in part else None

        try:
            part = wait_for(finished, timeout=90, interval=0.3, what="snapshot")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tail(log)}") from None
        assert "succeeded" in part and "hx-trigger" not in part
        names = re.findall(r'/files/((?:train|test)\.parquet)"', part)
        assert names == ["train.parquet", "test.parquet"]
        import io

        import pyarrow.parquet as pq

        rows = 0
        for name in names:
            body = client.get(f"/projects/{project.id}/snapshots/{snapshot_id}/files/{name}")
            assert body.status_code == 200
            rows += pq.read_table(io.BytesIO(body.content)).num_rows
        # 30 items: 3 ordered pairs each (q1 has a tie: 2) + 15 edits
        assert rows == 30 * 3 - 1 + 15
        card = client.get(f"/projects/{project.id}/snapshots/{snapshot_id}/files/README.md")
        assert card.status_code == 200 and "rows: 104" in card.text
    finally:
        stop_process(proc)


def test_a_bad_snapshot_form_says_what_is_wrong(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    csrf = login(client, "admin@example.org")
    bad = client.post(f"/projects/{project.id}/snapshots", data={
        "csrf_token": csrf, "format": "standard", "min_agreement": "2"})
    assert bad.status_code == 400 and "min_agreement" in bad.text
    bad = client.post(f"/projects/{project.id}/snapshots", data={
        "csrf_token": csrf, "format": "yaml"})
    assert bad.status_code == 400 and "format" in bad.text
