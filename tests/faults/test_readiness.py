"""/healthz and /readyz: what a load balancer or an operator is told about each dependency."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.health import migration_heads
from app.main import create_app
from tests.support import free_port, reset_caches


def test_ready_names_each_dependency_and_its_kind(client, backend) -> None:  # noqa: ANN001
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {**body["checks"]["database"], "ok": True,
                                          "kind": backend, "schema_current": True}
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["broker"]["kind"] == "filesystem"
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_dead_broker_is_named_without_its_password(app_env, monkeypatch) -> None:  # noqa: ANN001
    # Nothing listens on this port: the broker is down.
    monkeypatch.setenv("TANDEM_BROKER_URL", f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")
    reset_caches()
    with TestClient(create_app()) as client:
        response = client.get("/readyz")
        health = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    broker = body["checks"]["broker"]
    assert broker["ok"] is False and broker["kind"] == "redis"
    assert broker["error"].startswith("ConnectionError")
    assert "s3cret-pw" not in response.text
    assert health.status_code == 200  # liveness checks no dependency


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_database_behind_the_code_is_not_ready(app_env, tmp_path: Path,  # noqa: ANN001
                                                 monkeypatch) -> None:
    from alembic.script import ScriptDirectory

    from app.core.migrate import alembic_config, upgrade

    [head] = migration_heads()
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, previous)
    monkeypatch.setenv("TANDEM_DATABASE_URL", url)
    reset_caches()
    with TestClient(create_app()) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    database = response.json()["checks"]["database"]
    assert database["ok"] is False and "tandem migrate" in database["error"]
    assert database["schema"] == {"database": [previous], "code": [head]}


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_pooled_connection_the_server_ended_is_replaced_before_use(app_env) -> None:  # noqa: ANN001
    """A backend ended under an idle pooled connection (a restart, an operator's
    pg_terminate_backend, an idle timeout) is noticed at checkout, without a query to the
    server, and the request gets a new connection instead of an error."""
    from sqlalchemy import create_engine, text

    from app.core.db import make_engine
    from tests.conftest import PG_ADMIN_URL

    engine = make_engine(app_env.database_url)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            first = conn.scalar(text("SELECT pg_backend_pid()"))
        with admin.connect() as conn:  # the pooled connection's backend goes away
            assert conn.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": first})
        import time

        time.sleep(0.2)
        with engine.connect() as conn:  # no error: the pool saw it and connected again
            second = conn.scalar(text("SELECT pg_backend_pid()"))
        assert second != first
        with engine.connect() as conn:  # a live one is kept
            assert conn.scalar(text("SELECT pg_backend_pid()")) == second
    finally:
        engine.dispose()
        admin.dispose()
