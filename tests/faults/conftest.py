"""Servers of the test's own, for tests that stop, restart or kill them.

The machine's shared PostgreSQL (5432) and Redis (6379) serve every other test and every
other developer: a fault test never touches them. ``own_postgres`` is a fresh cluster made
with initdb in a temporary folder and run with pg_ctl on a free port; ``own_redis`` is a
redis-server on a free port that keeps nothing on disk (a restart loses its data, as our
production Redis without persistence would). Both are stopped when the test ends, and
either can be reused by any test that needs a server to break:

    def test_x(own_postgres, own_redis):
        url = own_postgres.url          # postgresql+psycopg://postgres@127.0.0.1:PORT/tandem
        own_postgres.restart()          # or .stop() ... .start()
        own_redis.restart()             # its keys are gone afterwards
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support import AppEnv, free_port, reset_caches, wait_for


def _pg_bin(name: str) -> str | None:
    """initdb and pg_ctl are not on PATH on Debian: take the newest installed version's."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return found[-1] if found else shutil.which(name)


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster of this test's own (trust auth, no fsync: a test, not a vault)."""

    folder: Path
    port: int
    pg_ctl: str

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/tandem"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _as_postgres([self.pg_ctl, "-D", str(self.data), *args], check=check)

    def start(self) -> None:
        self._ctl("-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-k {self.folder} -p {self.port} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c full_page_writes=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (clients see their connection drop); ``immediate``
        is a crash, recovered from the WAL at the next start."""
        self._ctl("-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def running(self) -> bool:
        return self._ctl("status", check=False).returncode == 0


def _as_postgres(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    # PostgreSQL refuses to run as root; as root we run it as the postgres OS user.
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=120)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh PostgreSQL server with an empty database ``tandem``; stopped at the end."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's tmp_path: that folder is root's alone, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="tandem-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = OwnPostgres(folder=folder, port=free_port(), pg_ctl=pg_ctl)
    try:
        _as_postgres([initdb, "-D", str(server.data), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--no-sync"])
        server.start()
        admin = create_engine(server.url.removesuffix("/tandem") + "/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE tandem"))
        admin.dispose()
        yield server
    finally:
        if server.data.exists() and server.running():
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class OwnRedis:
    """A redis-server of this test's own; keeps nothing on disk."""

    port: int
    log: Path
    proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=20, what="redis-server to answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def _answers(self) -> bool:
        import redis

        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A fresh redis-server on a free port; stopped at the end."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = OwnRedis(port=free_port(), log=tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres_env(own_postgres: OwnPostgres, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[AppEnv]:
    """Tandem's settings pointed at ``own_postgres`` (migrated) and a filesystem broker."""
    from app.core.migrate import upgrade

    upgrade(own_postgres.url)
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    env = {"TANDEM_DATABASE_URL": own_postgres.url, "TANDEM_DATA_DIR": str(data_dir),
           "TANDEM_SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
           "TANDEM_BROKER_URL": "filesystem://"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    yield AppEnv(database_url=own_postgres.url, data_dir=data_dir, env=env)
    reset_caches()
