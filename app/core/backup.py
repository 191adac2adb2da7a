"""Back up and restore Tandem's database: one file, taken while the server runs.

SQLite is copied with its online backup API, which reads one consistent state even while
the server keeps writing (a plain file copy can catch a half-written page or miss the WAL).
PostgreSQL is dumped with ``pg_dump -Fc`` and restored with ``pg_restore``; the password
goes to them through PGPASSWORD, never on a command line that ``ps`` or a log would show.
A restore then migrates the database to the current schema, so a backup taken by an older
Tandem can be restored by a newer one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, inspect, make_url

from app.core.migrate import upgrade

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
# libpq settings that may ride in the URL's query string: passed on as environment.
LIBPQ_QUERY_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                   "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
                   "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME"}


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why."""


@dataclass(frozen=True)
class RestoreResult:
    backend: str
    path: Path


def backup(url: str, dest: Path) -> Path:
    """Write a backup of the database at ``url`` to ``dest`` (replaced if present)."""
    parsed = make_url(url)
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed: a failed backup never leaves half a file
    # under the name of a good one.
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            _sqlite_copy(_sqlite_path(parsed, must_exist=True), partial)
        elif parsed.get_backend_name() == "postgresql":
            _run(["pg_dump", "--format=custom", "--no-password", f"--file={partial}",
                  *_pg_target(parsed, "--dbname")], parsed)
        else:
            raise BackupError(f"cannot back up a {parsed.get_backend_name()} database")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def restore(url: str, src: Path, *, force: bool = False) -> RestoreResult:
    """Load the backup ``src`` into the database at ``url``, then migrate it to head.

    A database that already holds Tandem's tables is overwritten only with ``force``.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    head = src.read_bytes()[:16] if src.is_file() else b""
    if not head:
        raise BackupError(f"{src}: no such backup file")
    expected = {"sqlite": SQLITE_MAGIC, "postgresql": PG_DUMP_MAGIC}.get(backend)
    if expected is None:
        raise BackupError(f"cannot restore into a {backend} database")
    if not head.startswith(expected):
        kind = ("a SQLite backup" if head.startswith(SQLITE_MAGIC) else
                "a pg_dump backup" if head.startswith(PG_DUMP_MAGIC) else "not a Tandem backup")
        raise BackupError(f"{src} is {kind}; the database is {backend}")
    if not force and _has_tables(url):
        raise BackupError("the database already has tables; pass --force to overwrite it")
    if backend == "sqlite":
        target = _sqlite_path(parsed, must_exist=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(src, target)
    else:
        _drop_all(url)  # tables the backup lacks (a newer schema's) would block the upgrade
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error",
              "--single-transaction", "--no-password", *_pg_target(parsed, "--dbname"),
              str(src.resolve())], parsed)
    upgrade(url)
    return RestoreResult(backend=backend, path=src)


def _sqlite_path(parsed: URL, *, must_exist: bool) -> Path:
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    path = Path(parsed.database).resolve()
    if must_exist and not path.is_file():
        raise BackupError(f"{path}: no such database file")
    return path


def _sqlite_copy(src: Path, dest: Path) -> None:
    """Copy one SQLite database into another with the online backup API."""
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dest, timeout=30)
    try:
        # pages=-1 copies everything in one step under one read transaction: the copy is the
        # database as it was at one instant, and writers in WAL mode are not held up.
        source.backup(target, pages=-1)
        if target.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError(f"{src}: the copy failed SQLite's integrity check")
    finally:
        target.close()
        source.close()


def _pg_target(parsed: URL, flag: str) -> list[str]:
    """Connection arguments for pg_dump/pg_restore, without the password."""
    args = [f"{flag}={parsed.database}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    return args


def _run(argv: list[str], parsed: URL) -> None:
    tool = argv[0]
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} not found: install the PostgreSQL client tools")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    for key, name in LIBPQ_QUERY_ENV.items():
        value = parsed.query.get(key)
        if isinstance(value, str):
            env[name] = value
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _has_tables(url: str) -> bool:
    from app.core.db import make_engine

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed, must_exist=False)
        if not path.exists() or path.stat().st_size == 0:
            return False
    engine = make_engine(url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _drop_all(url: str) -> None:
    """Drop every table in the target (restore --force): the backup brings its own."""
    from sqlalchemy import MetaData

    from app.core.db import make_engine

    engine = make_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()
