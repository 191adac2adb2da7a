"""Shared helpers for the benchmarks: databases, the server subprocess, memory, percentiles.

Run the benchmarks from the repository root (``python -m bench.run``) so that ``app`` and
``tests.support`` import.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("TANDEM_BENCH_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TANDEM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def git_commit() -> str:
    """The commit the figures were measured at, for the results file; "+changes" when the
    tracked files differ from it (an experiment not yet committed)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if changed.strip() else "")


def reference_loop_ms(repeats: int = 5) -> float:
    """How fast this machine is now: the best of ``repeats`` runs of a fixed pure-Python loop
    (a million multiply-adds, one core), in ms; lower is faster.

    On this project's 2-core VM the same commit's labels/s and CPU per label have swung by
    up to 2.2x between hours. Figures taken hours apart compare only beside this one.
    """
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, time.perf_counter() - t0)
    return best * 1000


# --------------------------------------------------------------------------- databases

@dataclass
class Backend:
    """One fresh database and data folder, and the TANDEM_* env that points at them."""

    kind: str  # "sqlite" | "postgresql"
    database_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    pg_name: str | None = None

    def apply(self) -> None:
        """Point this process's settings (factories, direct SQL) at the backend."""
        from tests.support import reset_caches

        os.environ.update(self.env)
        reset_caches()


def create_backend(kind: str) -> Backend:
    tag = uuid.uuid4().hex[:10]
    data_dir = Path(tempfile.mkdtemp(prefix=f"tandem-bench-{kind}-"))
    pg_name = None
    if kind == "sqlite":
        url = f"sqlite:///{data_dir / 'tandem.sqlite3'}"
    elif kind == "postgresql":
        from sqlalchemy import create_engine, text

        pg_name = f"tandem_bench_{tag}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        admin.dispose()
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{pg_name}"
    else:
        raise ValueError(kind)
    env = {
        "TANDEM_DATABASE_URL": url,
        "TANDEM_DATA_DIR": str(data_dir),
        "TANDEM_SECRET_KEY": "bench-secret-" + uuid.uuid4().hex,
        "TANDEM_BROKER_URL": REDIS_URL,
        "TANDEM_BROKER_KEY_PREFIX": f"tandem-bench-{tag}:",
    }
    return Backend(kind=kind, database_url=url, data_dir=data_dir, env=env, pg_name=pg_name)


def drop_backend(backend: Backend) -> None:
    import shutil

    from tests.support import reset_caches

    reset_caches()
    if backend.pg_name:
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": backend.pg_name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{backend.pg_name}"'))
        admin.dispose()
    shutil.rmtree(backend.data_dir, ignore_errors=True)


def migrate(env: dict[str, str]) -> None:
    """``python -m app.cli migrate`` with the backend's env."""
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT,
                   env=dict(os.environ, **env), check=True, capture_output=True)


# --------------------------------------------------------------------------- the server

# Web server processes per backend, as production runs them on this 2-core machine: one per
# core with PostgreSQL (docker-compose.yml), one for the embedded SQLite default.
DEFAULT_WEB_WORKERS = "sqlite=1,postgresql=2"


def web_workers(spec: str, kind: str) -> int:
    """How many web processes ``spec`` gives backend ``kind``: ``"2"`` (every backend) or
    ``"sqlite=1,postgresql=2"`` (a backend it does not name gets 1)."""
    if "=" not in spec:
        return int(spec)
    counts = dict(part.split("=", 1) for part in spec.split(",") if part.strip())
    return int(counts.get(kind, 1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m app.cli serve --port P`` as a subprocess (uvicorn, one worker, one pid)."""

    def __init__(self, env: dict[str, str], *, log: Path, port: int | None = None,
                 workers: int = 1) -> None:
        self.env = env
        self.workers = workers
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                cwd=ROOT, env=dict(os.environ, **self.env), stdout=out,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz in {timeout}s; see {self.log}")

    def stop(self, timeout: float = 25) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- CPU

def server_pids(server: Server) -> list[int]:
    """The server's process and, with --web-workers > 1, uvicorn's worker processes."""
    pids = [server.pid]
    try:
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        # uvicorn's workers, not multiprocessing's resource tracker beside them
        workers = [int(c) for c in children
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    except OSError:
        workers = []
    return pids + workers


def serving_pids(server: Server) -> list[int]:
    """The processes that serve requests (uvicorn's supervisor left out when it has workers:
    it only forks and watches them)."""
    pids = server_pids(server)
    return pids[1:] or pids


def cpu_s(pid: int, default: float = math.nan) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc;
    ``default`` when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return default
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_backends(database: str | None) -> list[int]:
    """Pids of this machine's PostgreSQL backends connected to ``database`` (none without
    one). CPU seconds per row or item do not move when other work slows the wall clock."""
    if not database:
        return []
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                words = fh.read().split(b"\0")[0].split()
        except OSError:
            continue
        if words[:1] == [b"postgres:"] and database.encode() in words:
            pids.append(int(pid))
    return pids


# --------------------------------------------------------------------------- memory

def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the most resident memory the process has had since it started."""
    return _status_kb(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Reset the pid's VmHWM to its current VmRSS (Linux >= 4.0: ``5 > clear_refs``).

    Without it a server's VmHWM stays at its startup peak (argon2 hashes a dummy password
    at import, with a 64 MiB memory cost), which hides anything smaller that comes later.
    """
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_kb(pid: int) -> int:
    """VmRSS: resident memory now."""
    return _status_kb(pid, "VmRSS")


class Background:
    """A daemon thread (``_run``) for the length of a ``with`` block; ``_stop`` is set when
    the block ends, and the thread is waited for."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class RssSampler(Background):
    """Samples VmRSS in a thread, of one pid or summed over ``pids()`` (several web
    processes); ``max_kb`` is the largest value seen."""

    def __init__(self, pid: int | None = None, interval: float = 0.02, *,
                 pids: Callable[[], list[int]] | None = None) -> None:
        super().__init__()
        self.pids = pids or (lambda: [pid])
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(sum(rss_kb(p) for p in self.pids()))
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    @property
    def max_kb(self) -> int:
        return max(self.samples) if self.samples else 0


# --------------------------------------------------------------------------- the disk

STALL_S = 0.05  # an fdatasync slower than this is a disk stall


def disk_dir(backend: Backend) -> Path:
    """Where the database's commits wait for the disk: PostgreSQL's data directory (its WAL
    is flushed there at every commit) when this process may write in it, else the backend's
    own folder (SQLite's database, or the same filesystem when PostgreSQL runs here)."""
    if backend.kind == "postgresql":
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN_URL)
        try:
            with admin.connect() as conn:
                directory = Path(conn.execute(text("SHOW data_directory")).scalar_one())
        except Exception:  # noqa: BLE001 (not a superuser, or elsewhere: the fallback)
            directory = None
        finally:
            admin.dispose()
        if directory is not None and os.access(directory, os.W_OK):
            return directory
    return backend.data_dir


class DiskProbe(Background):
    """Times an 8 KiB write and its fdatasync every ``interval`` seconds in ``directory``,
    as PostgreSQL's commit flushes its WAL, to tell a run whose latency tail came from the
    disk stalling (a flush of up to a second on this VM's disk, at random moments even when
    idle) from one where it came from the code. A context manager; ``stalls()`` are
    (start, end) in ``time.perf_counter`` time. Every 50 ms: a flush every 10 ms competed
    with PostgreSQL's own (0.6 ms at p50 under load, against 0.1 idle) and slowed it; at 50
    ms a stall is seen from at most 50 ms after it began."""

    def __init__(self, directory: Path, interval: float = 0.05) -> None:
        super().__init__()
        self.path = Path(directory) / f".tandem-bench-disk-probe-{uuid.uuid4().hex[:8]}"
        self.interval = interval
        self.flushes: list[tuple[float, float]] = []  # (start, seconds)

    def _run(self) -> None:
        block = b"\0" * 8192
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            n = 0
            while not self._stop.wait(self.interval):
                os.pwrite(fd, block, (n % 128) * 8192)
                n += 1
                t0 = time.perf_counter()
                os.fdatasync(fd)
                self.flushes.append((t0, time.perf_counter() - t0))
        finally:
            os.close(fd)
            self.path.unlink(missing_ok=True)

    def stalls(self, threshold_s: float = STALL_S) -> list[tuple[float, float]]:
        return [(t0, t0 + s) for t0, s in self.flushes if s > threshold_s]

    def summary(self) -> dict:
        times = [s for _, s in self.flushes]
        stalls = self.stalls()
        return {"directory": str(self.path.parent), "flushes": len(times),
                "p50_ms": percentile([t * 1000 for t in times], 50),
                "max_ms": max(times) * 1000 if times else math.nan,
                "stalls_over_50ms": len(stalls),
                "stalled_s": sum(end - start for start, end in stalls)}


def clear_of(spans: list[tuple[float, float]],
             stalls: list[tuple[float, float]]) -> list[float]:
    """The durations of the (start, seconds) calls that were not in flight during any of the
    stalls (start, end)."""
    return [took for start, took in spans
            if not any(start < end and start + took > s0 for s0, end in stalls)]


def p99_left_out(every: dict, clear: dict) -> str:
    """'p99 (n left out)' of the calls no disk stall met (summaries of all and of those)."""
    return f"{clear['p99_ms']:.1f} ({every['count'] - clear['count']} left out)"


# --------------------------------------------------------------------------- statistics

def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), linear between closest ranks (as numpy's default)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """Latency summary in milliseconds from a list of durations in seconds."""
    ms = [v * 1000 for v in values_s]
    return {"count": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms) if ms else math.nan,
            "over_50ms": sum(v > 50 for v in ms)}


class BackendTable:
    """Rows of figures with a column per backend (one result dict each); a figure a result
    lacks (or cannot be computed from it) shows as '-'."""

    def __init__(self, results: dict[str, dict]) -> None:
        self.results = results
        self.rows: list[tuple[str, list[str]]] = []

    def add(self, name: str, fn) -> None:  # noqa: ANN001
        cells = []
        for result in self.results.values():
            try:
                cells.append(str(fn(result)))
            except (KeyError, TypeError, ValueError):
                cells.append("-")
        self.rows.append((name, cells))

    def render(self) -> str:
        kinds = list(self.results)
        w0 = max(len(n) for n, _ in self.rows)
        ws = [max(len(k), *(len(c[i]) for _, c in self.rows)) for i, k in enumerate(kinds)]
        lines = [" | ".join([" " * w0] + [k.rjust(w) for k, w in zip(kinds, ws, strict=True)])]
        lines.append("-+-".join(["-" * w0] + ["-" * w for w in ws]))
        lines += [" | ".join([n.ljust(w0), *(c.rjust(w) for c, w in zip(cells, ws, strict=True))])
                  for n, cells in self.rows]
        return "\n".join(lines)
