"""Benchmark exports of many preference pairs: rows/s and peak memory of every process.

    .venv/bin/python -m bench.export [--backends postgresql,sqlite] [--sizes 10000,1000000]
                                     [--containers jsonl,parquet] [--no-stream] [--no-snapshot]
                                     [--no-conversational] [--keep] [--reuse DBNAME]
                                     [--reuse-sqlite FILE] [--profile]

Per backend, on a fresh database, seeds one pairwise project per size with set-based SQL (one
decided pair per item), then measures the two ways a dataset leaves Tandem:

- the streamed API export, ``GET /api/v1/projects/{id}/export?format=standard``, from the real
  server (restarted per size): rows/s, time to first byte, the server's peak RSS;
- export snapshots, built by the Celery task's body in a child process so that the peak memory
  measured is the build's own.

Prints a table and writes bench/results/export-<timestamp>.json. See bench/README.md. The
functions ``seed_pairs``, ``bench_stream_export`` and ``bench_snapshot`` are what the issue 7
suite calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    PG_ADMIN_URL,
    Backend,
    RssSampler,
    Server,
    cpu_s,
    create_backend,
    drop_backend,
    git_commit,
    migrate,
    peak_rss_kb,
    postgres_backends,
    reset_peak_rss,
    rss_kb,
)

RESULTS = ROOT / "bench" / "results"
ROWS_PER_S_TARGET = 100_000
PEAK_MB_TARGET = 300
POOL = 20_000  # prompt halves and response paragraphs to draw from
ADMIN_EMAIL = "export-admin@bench.example"
PROJECT_NAME = "Export bench {n}"

# --------------------------------------------------------------------------- seeding

# One row per g in 1..n.
SERIES = {
    "postgresql": "SELECT g FROM generate_series(1, :n) AS g",
    "sqlite": "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
              "SELECT g FROM s",
}


def _draw(x: str, salt: int) -> str:
    """A pool index drawn from the integer expression ``x`` (the same on both backends:
    Knuth's multiplicative hash, then the pool size), so both hold the same texts."""
    return f"((({x}) * 2654435761 + {salt}) % 4294967296) % {POOL}"


ITEMS_SQL = {
    "postgresql": f"""
INSERT INTO items (project_id, external_id, prompt, metadata, ready, created_at, label_count,
                   ai_accepted, queue_rank, in_queue, consensus_stale, is_gold)
SELECT :pid, 'bench-' || lpad(g::text, 7, '0'),
       to_jsonb(a.body || ' ' || rtrim(b.body, '.') || '?'),
       jsonb_build_object('source', 'bench', 'topic', (ARRAY['code', 'math', 'chat'])[1 + g % 3]),
       true, :now, 1, false, 1, false, false, false
FROM ({{series}}) AS s
JOIN bench_prompt_part a ON a.id = {_draw("g", 0)}
JOIN bench_prompt_part b ON b.id = {_draw("g", 7)}""",
    "sqlite": f"""
INSERT INTO items (project_id, external_id, prompt, metadata, ready, created_at, label_count,
                   ai_accepted, queue_rank, in_queue, consensus_stale, is_gold)
SELECT :pid, 'bench-' || printf('%07d', g),
       json_quote(a.body || ' ' || rtrim(b.body, '.') || '?'),
       json_object('source', 'bench', 'topic', CASE g % 3 WHEN 0 THEN 'code'
                   WHEN 1 THEN 'math' ELSE 'chat' END),
       1, :now, 1, 0, 1, 0, 0, 0
FROM ({{series}}) AS s
JOIN bench_prompt_part a ON a.id = {_draw("g", 0)}
JOIN bench_prompt_part b ON b.id = {_draw("g", 7)}""",
}

# Both responses of every item: four paragraphs each, different for every item.
_PARAGRAPHS = [_draw(f"i.id * 8 + p.pos + {2 * k}", 11 * k) for k in range(4)]
RESPONSES_SQL = {
    "postgresql": f"""
INSERT INTO responses (item_id, position, text, model_name, source, created_at)
SELECT i.id, p.pos, concat_ws(E'\\n\\n', a.body, b.body, c.body, d.body), p.model,
       'imported', :now
FROM items i
CROSS JOIN (VALUES (0, 'model-a'), (1, 'model-b')) AS p(pos, model)
JOIN bench_paragraph a ON a.id = {_PARAGRAPHS[0]}
JOIN bench_paragraph b ON b.id = {_PARAGRAPHS[1]}
JOIN bench_paragraph c ON c.id = {_PARAGRAPHS[2]}
JOIN bench_paragraph d ON d.id = {_PARAGRAPHS[3]}
WHERE i.project_id = :pid
ORDER BY i.id, p.pos""",
    "sqlite": f"""
INSERT INTO responses (item_id, position, text, model_name, source, created_at)
SELECT i.id, p.pos, a.body || char(10, 10) || b.body || char(10, 10) || c.body
                    || char(10, 10) || d.body, p.model, 'imported', :now
FROM items i
CROSS JOIN (SELECT 0 AS pos, 'model-a' AS model UNION ALL SELECT 1, 'model-b') AS p
JOIN bench_paragraph a ON a.id = {_PARAGRAPHS[0]}
JOIN bench_paragraph b ON b.id = {_PARAGRAPHS[1]}
JOIN bench_paragraph c ON c.id = {_PARAGRAPHS[2]}
JOIN bench_paragraph d ON d.id = {_PARAGRAPHS[3]}
WHERE i.project_id = :pid
ORDER BY i.id, p.pos""",
}

# One decided human pair per item: chosen is the first response, P = 1.0, margin 2.0 (what
# one "clearly better" label gives).
CONSENSUS_SQL = {
    "postgresql": """
INSERT INTO item_consensus (item_id, project_id, status, source, ranking, pairs, pair_count,
                            agreement, human_labels, confidence, decided_at, computed_at)
SELECT item_id, :pid, 'decided', 'human', jsonb_build_array(chosen, rejected),
       jsonb_build_array(jsonb_build_array(chosen, rejected, 1.0, 2.0)), 1,
       NULL, 1, NULL, :now, :now
FROM (SELECT r.item_id, min(r.id) FILTER (WHERE r.position = 0) AS chosen,
             min(r.id) FILTER (WHERE r.position = 1) AS rejected
      FROM responses r JOIN items i ON i.id = r.item_id
      WHERE i.project_id = :pid GROUP BY r.item_id) AS pairs""",
    "sqlite": """
INSERT INTO item_consensus (item_id, project_id, status, source, ranking, pairs, pair_count,
                            agreement, human_labels, confidence, decided_at, computed_at)
SELECT item_id, :pid, 'decided', 'human', json_array(chosen, rejected),
       json_array(json_array(chosen, rejected, 1.0, 2.0)), 1, NULL, 1, NULL, :now, :now
FROM (SELECT r.item_id, min(CASE WHEN r.position = 0 THEN r.id END) AS chosen,
             min(CASE WHEN r.position = 1 THEN r.id END) AS rejected
      FROM responses r JOIN items i ON i.id = r.item_id
      WHERE i.project_id = :pid GROUP BY r.item_id) AS pairs""",
}


def _pools(seed: int = 11) -> tuple[list[str], list[str]]:
    """Prompt halves (~20 words) and response paragraphs (~37 words, some markdown): a
    prompt of ~40 words and responses of ~150 words, the shape of issue 7's workload."""
    from bench.run import _text

    rng = random.Random(seed)
    halves = [_text(rng, 14, markdown=False) for _ in range(POOL)]
    paragraphs = [_text(rng, 30, markdown=rng.random() < 0.3) for _ in range(POOL)]
    return halves, paragraphs


def _ensure_migrated(backend: Backend) -> None:
    from sqlalchemy import inspect

    from app.core.db import get_engine

    if not inspect(get_engine()).has_table("item_consensus"):
        migrate(backend.env)


def _admin():  # noqa: ANN202
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import User
    from tests.support import make_user

    with session_scope() as db:
        user = db.scalar(select(User).where(User.email == ADMIN_EMAIL))
    return user or make_user(ADMIN_EMAIL, admin=True)


def seed_pairs(backend: Backend, n: int) -> dict:
    """A pairwise project with ``n`` items, two responses each and one decided pair each,
    and an API token with the export scope. Migrates the database first if it is empty.

    Returns project_id, token, items, pairs (the rows a standard export gives), seconds,
    and the average prompt and response length in words.
    """
    from sqlalchemy import text

    from app.auth.service import create_api_token
    from app.core.db import get_engine
    from app.models.types import utcnow
    from tests.support import make_project, write

    backend.apply()
    _ensure_migrated(backend)
    kind = backend.kind
    admin = _admin()
    project = make_project(admin, task_type="pairwise", k=1,
                           name=PROJECT_NAME.format(n=n) + f" {uuid.uuid4().hex[:6]}")
    token = write(create_api_token, user=admin, project_id=project.id, name="export bench",
                  scopes=["export", "read"]).secret
    halves, paragraphs = _pools()
    now = utcnow().replace(tzinfo=None)
    # As SQLAlchemy stores a DateTime on SQLite (text), without sqlite3's deprecated adapter.
    stamp = now if kind == "postgresql" else now.isoformat(sep=" ", timespec="microseconds")
    params = {"pid": project.id, "n": n, "now": stamp}
    t0 = time.perf_counter()
    with get_engine().begin() as conn:
        for table, bodies in (("bench_prompt_part", halves), ("bench_paragraph", paragraphs)):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(text(f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, body text)"))
            conn.execute(text(f"INSERT INTO {table} (id, body) VALUES (:id, :body)"),
                         [{"id": i, "body": b} for i, b in enumerate(bodies)])
            conn.execute(text(f"ANALYZE {table}"))
        conn.execute(text(ITEMS_SQL[kind].format(series=SERIES[kind])), params)
        conn.execute(text(RESPONSES_SQL[kind]), params)
        conn.execute(text(CONSENSUS_SQL[kind]), params)
        for table in ("bench_prompt_part", "bench_paragraph"):
            conn.execute(text(f"DROP TABLE {table}"))
    seconds = time.perf_counter() - t0
    # What autovacuum does after a bulk load: statistics, and the visibility map that
    # index-only scans rely on. (SQLite: in a committed transaction, or it is rolled back.)
    if kind == "postgresql":
        with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE items, responses, item_consensus"))
    else:
        with get_engine().begin() as conn:
            conn.execute(text("ANALYZE"))
    with get_engine().connect() as conn:
        words = conn.execute(text(
            "SELECT avg(length(r.text) - length(replace(r.text, ' ', '')) + 1) "
            "FROM responses r JOIN items j ON j.id = r.item_id "
            "WHERE j.project_id = :pid AND j.id % 100 = 0"), {"pid": project.id}).scalar()
    return {"project_id": project.id, "token": token, "items": n, "pairs": n,
            "seconds": seconds, "vacuum_seconds": time.perf_counter() - t0 - seconds,
            "response_words": float(words or 0)}


# --------------------------------------------------------------------------- CPU time

def postgres_cpu_s(database: str | None) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to ``database``, or 0."""
    return sum(cpu_s(pid, 0.0) for pid in postgres_backends(database))


# --------------------------------------------------------------------------- streamed export

def bench_stream_export(server_url: str, project_id: int, token: str, server_pid: int, *,
                        expected: int | None = None, fmt: str = "standard",
                        database: str | None = None) -> dict:
    """Stream ``GET /api/v1/projects/{id}/export`` and read the server's memory around it.

    The server's VmHWM is reset first (its startup peak would hide the export's); rows are
    counted from the bytes received; ``ok`` is HTTP 200, every row a JSON object, and (given
    ``expected``) the right number of rows. CPU seconds: the server's, this client's, and
    (given the PostgreSQL ``database``'s name) its backends'.
    """
    import orjson

    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server_url, timeout=3600, headers=auth) as client:
        client.get(f"/api/v1/projects/{project_id}").raise_for_status()  # warm-up: auth, ORM
        hwm_reset = reset_peak_rss(server_pid)
        rss_before = rss_kb(server_pid)
        nbytes = rows = 0
        first_byte = None
        tail = b""  # an incomplete last line of the previous chunk
        well_formed = True
        cpu_before = (cpu_s(server_pid), time.process_time(), postgres_cpu_s(database))
        with RssSampler(server_pid, interval=0.05) as sampler:
            t0 = time.perf_counter()
            with client.stream("GET", f"/api/v1/projects/{project_id}/export",
                               params={"format": fmt}) as r:
                status = r.status_code
                for chunk in r.iter_bytes():
                    if first_byte is None:
                        first_byte = time.perf_counter() - t0
                    nbytes += len(chunk)
                    rows += chunk.count(b"\n")
                    if rows < 1000:  # parse the first rows; the count checks the rest
                        lines = (tail + chunk).split(b"\n")
                        tail = lines.pop()
                        well_formed &= all(isinstance(orjson.loads(x), dict) for x in lines)
            elapsed = time.perf_counter() - t0
        peak = peak_rss_kb(server_pid)
        cpu = {"server": cpu_s(server_pid) - cpu_before[0],
               "client": time.process_time() - cpu_before[1],
               "postgres": postgres_cpu_s(database) - cpu_before[2]}
    ok = status == 200 and well_formed and (expected is None or rows == expected)
    return {"ok": ok, "status": status, "rows": rows, "expected": expected, "bytes": nbytes,
            "seconds": elapsed, "first_byte_s": first_byte,
            "rows_per_s": rows / elapsed if elapsed else 0.0,
            "mb_per_s": nbytes / 1e6 / elapsed if elapsed else 0.0,
            "peak_rss_was_reset": hwm_reset, "rss_before_mb": rss_before / 1024,
            "peak_rss_mb": peak / 1024, "server_peak_mb": peak / 1024,
            "peak_rss_growth_mb": (peak - rss_before) / 1024,
            "sampled_max_rss_mb": sampler.max_kb / 1024, "cpu_s": cpu,
            "cpu_us_per_row": sum(cpu.values()) / rows * 1e6 if rows else None,
            "processes": {"server": {"pid": server_pid, "peak_rss_mb": peak / 1024}}}


# --------------------------------------------------------------------------- snapshots

# Run in a fresh interpreter that imports only the app, so its peak memory is the build's.
CHILD = """
import json, os, resource, sys, time

def vm_kb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])

from app.exports.snapshots import build_snapshot

snapshot_id, profile = int(sys.argv[1]), sys.argv[2]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def postgres_cpu(database):  # its backends end with this process: read them before it does
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                words = fh.read().split(b"\\0")[0].split()
            if words[:1] == [b"postgres:"] and database.encode() in words:
                with open(f"/proc/{pid}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            pass
    return total

url = os.environ["TANDEM_DATABASE_URL"]
database = url.rsplit("/", 1)[1] if url.startswith("postgresql") else None
pg0 = postgres_cpu(database) if database else 0.0

rss_start = vm_kb("VmRSS")
cpu0 = cpu()
t0 = time.perf_counter()
if profile:
    import cProfile
    cProfile.run("build_snapshot(snapshot_id=snapshot_id)", profile)
else:
    build_snapshot(snapshot_id=snapshot_id)
seconds, build_cpu = time.perf_counter() - t0, cpu() - cpu0
pg = postgres_cpu(database) - pg0 if database else 0.0
print(json.dumps({"seconds": seconds, "rss_start_kb": rss_start, "vm_hwm_kb": vm_kb("VmHWM"),
                  "cpu_s": build_cpu, "postgres_cpu_s": pg}))
"""


def _data_rows(path: Path) -> int:
    """Rows in a data file, counted from the file itself (not the manifest)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def queue_snapshot(project_id: int, *, fmt: str, container: str) -> int:
    """A queued snapshot row, committed, as the HTTP endpoint makes it."""
    from app.core.db import session_scope
    from app.exports.schemas import SnapshotIn
    from app.exports.snapshots import create_snapshot
    from app.models import Project

    with session_scope(write=True) as db:
        project = db.get(Project, project_id)
        spec = SnapshotIn(format=fmt, container=container, margin=True)
        return create_snapshot(db, project=project, user=None, spec=spec, enqueue=False).id


def bench_snapshot(backend: Backend, project_id: int, container: str = "jsonl", *,
                   fmt: str = "standard", expected: int | None = None, keep: bool = False,
                   profile: Path | None = None) -> dict:
    """Queue a snapshot and build it with the Celery task's body in a child process.

    ``seconds`` is the time inside ``build_snapshot`` (consensus refresh, reads, rows,
    fingerprints, hashing, writes, fsync, manifest); the peak RSS is the child's VmHWM.
    ``ok``: the snapshot succeeded and the file holds as many rows as its manifest says
    (and ``expected``, if given).
    """
    from app.core.db import session_scope
    from app.exports.snapshots import snapshots_root
    from app.models import ExportSnapshot

    backend.apply()
    snapshot_id = queue_snapshot(project_id, fmt=fmt, container=container)
    cmd = [sys.executable, "-c", CHILD, str(snapshot_id), str(profile or "")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **backend.env),
                          capture_output=True, text=True)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"ok": False, "snapshot_id": snapshot_id, "error": proc.stderr[-4000:]}
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    with session_scope() as db:
        snap = db.get(ExportSnapshot, snapshot_id)
        status, rows, manifest, path = snap.status, snap.rows, snap.manifest, snap.path
    if status != "succeeded":
        return {"ok": False, "snapshot_id": snapshot_id, "error": f"status {status}"}
    folder = snapshots_root() / path
    data = manifest["files"][0]
    counted = _data_rows(folder / data["name"])
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = child["seconds"]
    peak = child["vm_hwm_kb"] / 1024
    return {"ok": rows == counted and (expected is None or rows == expected),
            "snapshot_id": snapshot_id, "format": fmt, "container": container,
            "rows": rows, "rows_in_file": counted, "seconds": seconds,
            "process_seconds": process_s, "rows_per_s": rows / seconds if seconds else 0.0,
            "rss_start_mb": child["rss_start_kb"] / 1024, "peak_rss_mb": peak, "peak_mb": peak,
            "file_mb": data["bytes"] / 1e6, "mb_per_s": data["bytes"] / 1e6 / seconds,
            "cpu_s": {"build": child["cpu_s"], "postgres": child["postgres_cpu_s"]},
            "cpu_us_per_row": (child["cpu_s"] + child["postgres_cpu_s"]) / rows * 1e6
            if rows else None,
            "processes": {"build": {"pid": None, "peak_rss_mb": peak}},
            "profile": str(profile.relative_to(ROOT)) if profile else None}


# --------------------------------------------------------------------------- driver

def reuse_backend(kind: str, name: str) -> Backend:
    """A kept database: a tandem_bench_* database name, or a SQLite file."""
    data_dir = Path(tempfile.mkdtemp(prefix="tandem-bench-export-"))
    if kind == "postgresql":
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{Path(name).resolve()}"
    env = {"TANDEM_DATABASE_URL": url, "TANDEM_DATA_DIR": str(data_dir),
           "TANDEM_SECRET_KEY": "bench-secret-" + uuid.uuid4().hex, "TANDEM_BROKER_URL": ""}
    return Backend(kind=kind, database_url=url, data_dir=data_dir, env=env,
                   pg_name=name if kind == "postgresql" else None)


def find_projects() -> dict[int, int]:
    """Seeded bench projects: project id by size (for --reuse)."""
    from sqlalchemy import text

    from app.core.db import get_engine

    with get_engine().connect() as conn:
        return {n: pid for pid, n in conn.execute(text(
            "SELECT p.id, count(i.id) FROM projects p JOIN items i ON i.project_id = p.id "
            "WHERE p.name LIKE 'Export bench %' GROUP BY p.id"))}


def table(runs: list[dict]) -> str:
    head = ["backend", "pairs", "export", "rows", "seconds", "rows/s", "1st byte",
            "peak MB", "MB", "CPU us/row", "target"]
    lines = [head]
    for b in runs:
        if "rows_per_s" not in b:
            lines.append([b["backend"], f"{b['size']:,}", b["what"], "-", "-", "-", "-", "-",
                          "-", "-", "FAILED"])
            continue
        ok = b["rows_per_s"] >= ROWS_PER_S_TARGET and b["peak_rss_mb"] < PEAK_MB_TARGET
        first = b.get("first_byte_s")
        lines.append([b["backend"], f"{b['size']:,}", b["what"], f"{b['rows']:,}",
                      f"{b['seconds']:.1f}", f"{b['rows_per_s']:,.0f}",
                      "-" if first is None else f"{first * 1000:.0f} ms",
                      f"{b['peak_rss_mb']:.0f}",
                      f"{b.get('file_mb', b.get('bytes', 0) / 1e6):.0f}",
                      f"{b['cpu_us_per_row']:.1f}" if b.get("cpu_us_per_row") else "-",
                      ("ok" if ok else "MISSED") + ("" if b["ok"] else " ROWS?")])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     for row in lines)


def run_backend(kind: str, args: argparse.Namespace, stamp: str, out: dict) -> None:
    """Seed and measure every size on one fresh (or reused) database."""
    reuse = args.reuse if kind == "postgresql" else args.reuse_sqlite
    backend = reuse_backend(kind, reuse) if reuse else create_backend(kind)
    # Snapshot tasks go to a folder broker in the data dir, removed with it; no worker runs.
    backend.env["TANDEM_BROKER_URL"] = ""
    keep_db = args.keep or bool(reuse)
    log = RESULTS / f"export-{stamp}-logs" / f"{kind}-server.log"
    try:
        if not reuse:
            migrate(backend.env)
        backend.apply()
        existing = find_projects() if reuse else {}
        for n in args.sizes:
            if n in existing:
                from app.auth.service import create_api_token
                from tests.support import write

                pid = existing[n]
                token = write(create_api_token, user=_admin(), project_id=pid,
                              name="export bench", scopes=["export", "read"]).secret
                print(f"{kind}: reusing project {pid} with {n:,} items", flush=True)
            else:
                print(f"{kind}: seeding {n:,} items and pairs...", flush=True)
                seeded = seed_pairs(backend, n)
                out["seeding"].append({"backend": kind, **seeded, "token": None})
                pid, token = seeded["project_id"], seeded["token"]
                print(f"   -> {seeded['seconds']:.1f} s (+ {seeded['vacuum_seconds']:.1f} s "
                      f"analyze); responses {seeded['response_words']:.0f} words", flush=True)
            todo: list[tuple[str, str, str]] = []
            if not args.no_stream:
                todo.append(("stream", "standard", "jsonl"))
            if not args.no_snapshot:
                todo += [("snapshot", "standard", c) for c in args.containers]
                if n == max(args.sizes) and not args.no_conversational \
                        and "jsonl" in args.containers:
                    todo.append(("snapshot", "conversational", "jsonl"))
            for how, fmt, container in todo:
                what = "stream" if how == "stream" else f"snapshot {fmt} {container}"
                print(f"   export {n:,} pairs: {what}...", flush=True)
                if how == "stream":
                    with Server(backend.env, log=log) as server:
                        result = bench_stream_export(server.url, pid, token, server.pid,
                                                     expected=n, database=backend.pg_name)
                else:
                    profile = (RESULTS / f"export-{stamp}-{kind}-{n}-{fmt}-{container}.pstats"
                               if args.profile else None)
                    result = bench_snapshot(backend, pid, container, fmt=fmt, expected=n,
                                            keep=args.keep, profile=profile)
                out["runs"].append({"backend": kind, "size": n, "what": what, **result})
                if "rows_per_s" not in result:
                    print(f"   -> FAILED: {result.get('error') or result}", flush=True)
                    continue
                print(f"   -> {result['seconds']:.1f} s, {result['rows_per_s']:,.0f} rows/s, "
                      f"peak {result['peak_rss_mb']:.0f} MB"
                      + ("" if result["ok"] else "  (ROWS WRONG)"), flush=True)
                if result.get("profile"):
                    import pstats

                    pstats.Stats(str(ROOT / result["profile"])).sort_stats(
                        "tottime").print_stats(25)
    finally:
        if not keep_db:
            drop_backend(backend)
        elif args.keep:
            print(f"kept {backend.database_url}; data in {backend.data_dir}")
        else:  # reused: the database was there before and stays; this run's files go
            from tests.support import reset_caches

            reset_caches()
            shutil.rmtree(backend.data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="postgresql,sqlite",
                    help="postgresql and/or sqlite, comma-separated")
    ap.add_argument("--sizes", default="10000,1000000", help="pairs per project, comma-separated")
    ap.add_argument("--containers", default="jsonl,parquet")
    ap.add_argument("--no-stream", action="store_true", help="skip the streamed API export")
    ap.add_argument("--no-snapshot", action="store_true", help="skip the snapshots")
    ap.add_argument("--no-conversational", action="store_true",
                    help="skip the conversational JSONL snapshot at the largest size")
    ap.add_argument("--keep", action="store_true",
                    help="keep the databases and the snapshot files afterwards")
    ap.add_argument("--reuse", metavar="DBNAME",
                    help="PostgreSQL: use a kept tandem_bench_* database; sizes it lacks are "
                         "seeded")
    ap.add_argument("--reuse-sqlite", metavar="FILE",
                    help="SQLite: use a kept database file; sizes it lacks are seeded")
    ap.add_argument("--profile", action="store_true",
                    help="run each snapshot build under cProfile (slower); stats go to "
                         "bench/results")
    args = ap.parse_args(argv)
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.containers = [c.strip() for c in args.containers.split(",") if c.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    out: dict = {"timestamp": stamp, "commit": git_commit(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "platform": platform.platform(),
                 "backends": backends, "sizes": args.sizes,
                 "targets": {"rows_per_s": ROWS_PER_S_TARGET, "peak_mb": PEAK_MB_TARGET},
                 "seeding": [], "runs": []}
    for kind in backends:
        run_backend(kind, args, stamp, out)
    out["total_seconds"] = time.perf_counter() - t_all
    print(f"\nTandem export benchmark: {', '.join(backends)}, {os.cpu_count()} CPUs, commit "
          f"{out['commit']}; target >= {ROWS_PER_S_TARGET:,} rows/s and < {PEAK_MB_TARGET} MB "
          f"peak (stream: the server; snapshot: the build); total "
          f"{out['total_seconds']:.0f} s\n")
    print(table(out["runs"]))
    path = RESULTS / f"export-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0 if all(r.get("ok") for r in out["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
