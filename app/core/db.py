"""Engine and sessions. One transaction per request; SQLite gets WAL and IMMEDIATE writes."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, MetaData, create_engine, event, literal_column, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


WRITE = {"tandem_write": True}
PG_CONNECT_TIMEOUT_S = 5


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, WAL, a busy timeout, and BEGIN IMMEDIATE for writers.

    A deferred SQLite transaction that reads and then writes can fail with "database is
    locked" without waiting; write transactions therefore take the lock up front, and the
    busy timeout makes them queue instead of failing.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        # SQLite's busy handler retries with growing sleeps, so under load one writer can
        # starve while others grab the lock again at once. Writers queue instead: inside a
        # process on a lock, across processes (several web processes, Celery workers) on a
        # lock file next to the database, whose waiters the kernel wakes as soon as it is
        # free. The busy timeout still covers other programs.
        write_lock = WriteQueue(make_url(url).database or "")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            if conn.get_execution_options().get("tandem_write", False):
                write_lock.acquire()
                conn.info["tandem_write_lock"] = True
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                except BaseException:
                    conn.info.pop("tandem_write_lock", None)
                    write_lock.release()
                    raise
            else:
                conn.exec_driver_sql("BEGIN")

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn):  # noqa: ANN001
            if conn.info.pop("tandem_write_lock", False):
                write_lock.release()

        return engine
    # While PostgreSQL is down or unreachable a request fails within connect_timeout (and
    # answers 503) instead of hanging; pool_pre_ping swaps the connections a restart killed
    # for new ones, so the server recovers without being restarted itself.
    driver = make_url(url).get_driver_name()
    libpq = driver in ("psycopg", "psycopg2")
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if libpq else {}
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                           connect_args=connect_args)
    if driver == "psycopg":
        engine.dialect.do_ping = _idle_connection_alive  # the pre-ping without a round trip
    return engine


def _idle_connection_alive(dbapi_connection) -> bool:  # noqa: ANN001
    """Whether a pooled psycopg connection is fit to use, without asking the server.

    An idle connection has nothing to read unless the server closed it (a restart or a
    terminated backend sends its farewell, then end-of-file) or sent what we never asked
    for; either way the pool replaces it. The default pre-ping sent a query for this on
    every request: one round trip in twenty on the labeling path.
    """
    import select

    from psycopg import pq

    pgconn = dbapi_connection.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except Exception:  # noqa: BLE001  (no socket, or a bad one: a dead connection)
        return False
    return not readable


class WriteQueue:
    """The SQLite writers' queue: a lock inside the process, then ``flock`` on a file beside
    the database across processes (``:memory:`` and temporary databases: the lock alone).

    The thread lock is a plain Lock, not an RLock: FastAPI may end a transaction on another
    thread than the one that began it. The file is opened once per process (a forked child
    opens its own: an inherited descriptor would share the parent's lock).
    """

    TIMEOUT_S = 30

    def __init__(self, database: str) -> None:
        self._lock = threading.Lock()
        self._path = f"{database}.write-lock" if database and database != ":memory:" else None
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> None:
        if not self._lock.acquire(timeout=self.TIMEOUT_S):
            raise TimeoutError(f"waited {self.TIMEOUT_S} s for the database write lock")
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().resolved_database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


# For ``.limit(ONE_ROW)``: LIMIT 1 written into the SQL, not sent as a parameter. PostgreSQL
# plans a prepared statement whose LIMIT is a parameter as if it fetched a tenth of the rows,
# finds that generic plan dearer than the plans made for LIMIT 1, and so plans the statement
# anew at every run (planning was ~13% of its CPU under labeling load).
ONE_ROW = literal_column("1")
# For ``.offset(NO_OFFSET)`` in a subquery that PostgreSQL must not pull up into a join.
NO_OFFSET = literal_column("0")

_MEMO = "tandem_memo"


def memo(session: Session, key: str) -> dict:
    """A per-transaction cache for reads a request repeats (e.g. the project's rules)."""
    return session.info.setdefault(_MEMO, {}).setdefault(key, {})


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_memo(session: Session) -> None:
    session.info.pop(_MEMO, None)


@lru_cache
def _write_engine() -> Engine:
    """The engine whose connections begin as writers (the same pool as get_engine's)."""
    return get_engine().execution_options(**WRITE)


def new_session(*, write: bool = False) -> Session:
    """A session that connects at its first statement; with ``write``, its transactions
    begin as writers (SQLite: BEGIN IMMEDIATE)."""
    maker = get_sessionmaker()
    return maker(bind=_write_engine()) if write else maker()


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer (SQLite: BEGIN IMMEDIATE)."""
    if not session.in_transaction():
        session.connection(execution_options=WRITE)


@contextmanager
def session_scope(*, write: bool = False) -> Iterator[Session]:
    """A unit of work outside a request (CLI, Celery): commit on success, else roll back."""
    session = get_sessionmaker()()
    try:
        if write:
            begin_write(session)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _insert(session: Session):  # noqa: ANN202  (the dialect's insert construct)
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def insert_ignore(session: Session, model: type, rows: list[dict], *, keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, on SQLite and PostgreSQL alike."""
    if not rows:
        return
    session.execute(_insert(session)(model).on_conflict_do_nothing(index_elements=keys), rows)


def upsert(session: Session, model: type, row: dict, *, keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE with the row's other values, on SQLite and
    PostgreSQL alike."""
    statement = _insert(session)(model).values(**row)
    session.execute(statement.on_conflict_do_update(
        index_elements=keys,
        set_={k: statement.excluded[k] for k in row if k not in keys}))
