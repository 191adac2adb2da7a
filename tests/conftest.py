"""Fixtures: real databases (SQLite and PostgreSQL), the real app, logins and factories.

Each test that takes ``backend`` runs twice, on SQLite (the embedded default) and on the
PostgreSQL server on 127.0.0.1:5432. PostgreSQL gets one database per test run, migrated
once and emptied after every test; SQLite gets a fresh copy of a migrated file per test.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support import AppEnv, reset_caches

PG_ADMIN_URL = os.environ.get("TANDEM_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TANDEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _pg_url(dbname: str) -> str:
    return re.sub(r"/[^/]*$", f"/{dbname}", PG_ADMIN_URL)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A migrated PostgreSQL database for this test run, dropped at the end."""
    from app.core.migrate import upgrade

    name = f"tandem_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    upgrade(url)
    yield url
    reset_caches()
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
        ), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny causal LM and reward model, built offline once per test run."""
    from tests.trl_support import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.core.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    import app.models  # noqa: F401
    from app.core.db import Base

    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "tandem.sqlite3"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database")
        yield url
        reset_caches()
        _truncate_all(url)


@pytest.fixture
def app_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppEnv]:
    """Point Tandem's settings at this test's database and data folder."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    env = {
        "TANDEM_DATABASE_URL": database_url,
        "TANDEM_DATA_DIR": str(data_dir),
        "TANDEM_SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
        "TANDEM_BROKER_URL": "filesystem://",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    yield AppEnv(database_url=database_url, data_dir=data_dir, env=env)
    reset_caches()


@pytest.fixture
def redis_broker(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``redis_broker(**settings)`` points this test and the workers it starts at the Redis
    broker on 127.0.0.1, under a key prefix of the test's own (deleted at the end), with any
    extra settings; it returns the full environment for worker and server processes."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"

    def use(**extra: str) -> dict[str, str]:
        env = dict(app_env.env, TANDEM_BROKER_URL=REDIS_URL, TANDEM_BROKER_KEY_PREFIX=prefix,
                   **extra)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_caches()
        return env

    yield use
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def client(app_env: AppEnv):  # noqa: ANN201
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def db(app_env: AppEnv):  # noqa: ANN201
    """A session for checking what the app stored. Call ``db.rollback()`` before a check that
    follows more requests: on SQLite an open read transaction keeps seeing its old snapshot."""
    from app.core.db import get_sessionmaker

    session = get_sessionmaker()()
    yield session
    session.close()
