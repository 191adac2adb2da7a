"""Readiness checks: is each dependency the server needs reachable right now?

Each check runs with a short timeout and says what is wrong in a few words. The report is
served unauthenticated (`/readyz`), so it never carries a URL, a user name or a password:
only the kind of each dependency, whether it answered, how long it took, and the error's
class and a trimmed message with anything credential-like masked.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import text

from app.core.config import Settings, get_settings

CHECK_TIMEOUT_S = 3.0
# user:password@ in a URL, and password=... in a libpq connection string.
_URL_CREDENTIALS = re.compile(r"//[^@/\s]+@")
_PASSWORD = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)
# The checks run side by side, so /readyz takes as long as the slowest, not the sum. A
# check that hangs past the deadline keeps its thread only until its own socket timeout.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tandem-health")


@dataclass(frozen=True)
class Check:
    ok: bool
    kind: str
    ms: float
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "kind": self.kind, "ms": round(self.ms, 1)}
        if self.error:
            out["error"] = self.error
        out.update(self.detail)
        return out


def describe_error(exc: BaseException) -> str:
    """``ClassName: first line of the message``, trimmed, with credentials masked."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = _URL_CREDENTIALS.sub("//***@", lines[0] if lines else "")
    first = _PASSWORD.sub(r"\1***", first)
    return f"{type(exc).__name__}: {first[:200]}".rstrip(": ")


@lru_cache
def migration_heads() -> tuple[str, ...]:
    """The revision(s) the code expects the database to be at (read once per process)."""
    from alembic.script import ScriptDirectory

    from app.core.migrate import alembic_config

    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def check_database() -> dict[str, Any]:
    """SELECT 1, then whether alembic_version is at the code's head."""
    from app.core.db import get_engine

    engine = get_engine()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        try:
            current = tuple(sorted(conn.scalars(text("SELECT version_num FROM alembic_version"))))
        except Exception:  # noqa: BLE001  (no table: never migrated)
            current = ()
    heads = migration_heads()
    detail: dict[str, Any] = {"schema_current": current == heads}
    if current != heads:
        detail["schema"] = {"database": list(current), "code": list(heads)}
        raise SchemaBehind("the database schema is not at the latest migration; run "
                           "`tandem migrate`", detail)
    return detail


class SchemaBehind(Exception):
    def __init__(self, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


def check_redis(url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S,
                                  socket_timeout=CHECK_TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()
    return {}


def check_folder(settings: Settings) -> dict[str, Any]:
    """The filesystem broker works while its folder takes new files."""
    folder = settings.broker_folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".ready-"):
        pass
    return {}


def _kind(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def _outcome(kind: str, future: Future, start: float, deadline: float) -> Check:
    try:
        detail = future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return Check(False, kind, (time.monotonic() - start) * 1000,
                     f"no answer within {CHECK_TIMEOUT_S:g} s")
    except SchemaBehind as exc:
        return Check(False, kind, (time.monotonic() - start) * 1000, str(exc), exc.detail)
    except Exception as exc:  # noqa: BLE001  (any failure means: not ready, and why)
        return Check(False, kind, (time.monotonic() - start) * 1000, describe_error(exc))
    return Check(True, kind, (time.monotonic() - start) * 1000, None, detail)


def readiness(settings: Settings | None = None) -> tuple[bool, dict[str, Any]]:
    """Check every dependency; returns (all ok, {"database": {...}, "broker": {...}})."""
    settings = settings or get_settings()
    broker = settings.resolved_broker_url
    checks: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "database": (_kind(settings.resolved_database_url), check_database)}
    if broker.startswith("redis"):
        # The judge's rate limits live in the same Redis: this check covers them too.
        checks["broker"] = ("redis", lambda: check_redis(broker))
    elif broker.startswith("filesystem"):
        checks["broker"] = ("filesystem", lambda: check_folder(settings))
    start = time.monotonic()
    deadline = start + CHECK_TIMEOUT_S + 0.5
    futures = {name: (kind, _POOL.submit(fn)) for name, (kind, fn) in checks.items()}
    report = {name: _outcome(kind, future, start, deadline).as_dict()
              for name, (kind, future) in futures.items()}
    return all(c["ok"] for c in report.values()), report
