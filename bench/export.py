"""Benchmark export snapshots of many preference pairs from PostgreSQL: rows/s and peak memory.

    .venv/bin/python -m bench.export [--sizes 10000,100000,1000000] [--keep] [--reuse DBNAME]

Seeds one pairwise project per size with set-based SQL (one decided pair per item), then
builds snapshots with the Celery task's body in a child process, so that the peak memory
measured is the build's own. Prints a table and writes bench/results/export-<timestamp>.json.
See bench/README.md.
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

from bench.common import (  # noqa: E402
    PG_ADMIN_URL,
    Backend,
    create_backend,
    drop_backend,
    git_commit,
    migrate,
)

RESULTS = ROOT / "bench" / "results"
ROWS_PER_S_TARGET = 100_000
PEAK_MB_TARGET = 300
POOL = 20_000  # prompt halves and response paragraphs to draw from
ADMIN_EMAIL = "export-admin@bench.example"
PROJECT_NAME = "Export bench {n}"

# --------------------------------------------------------------------------- seeding

ITEMS_SQL = """
INSERT INTO items (project_id, external_id, prompt, metadata, ready, created_at, label_count,
                   ai_accepted, queue_rank, consensus_stale, is_gold)
SELECT :pid, 'bench-' || lpad(g::text, 7, '0'),
       to_jsonb(a.body || ' ' || rtrim(b.body, '.') || '?'),
       jsonb_build_object('source', 'bench', 'topic', (ARRAY['code', 'math', 'chat'])[1 + g % 3]),
       true, :now, 1, false, 1, false, false
FROM generate_series(1, :n) AS g
JOIN bench_prompt_part a ON a.id = (hashint4(g)::bigint + 2147483648) % :pool
JOIN bench_prompt_part b ON b.id = (hashint4(g + 1000000000)::bigint + 2147483648) % :pool
"""

# Both responses of every item, then one decided human pair per item from their ids: chosen
# is the first response, P = 1.0, margin 2.0 (what one "clearly better" label gives).
RESPONSES_AND_CONSENSUS_SQL = """
WITH r AS (
    INSERT INTO responses (item_id, position, text, model_name, source, created_at)
    SELECT i.id, p.pos, concat_ws(E'\\n\\n', a.body, b.body, c.body, d.body), p.model,
           'imported', :now
    FROM items i
    CROSS JOIN (VALUES (0, 'model-a'), (1, 'model-b')) AS p(pos, model)
    JOIN bench_paragraph a ON a.id = (hashint4(i.id * 8 + p.pos)::bigint + 2147483648) % :pool
    JOIN bench_paragraph b ON b.id = (hashint4(i.id * 8 + p.pos + 2)::bigint + 2147483648) % :pool
    JOIN bench_paragraph c ON c.id = (hashint4(i.id * 8 + p.pos + 4)::bigint + 2147483648) % :pool
    JOIN bench_paragraph d ON d.id = (hashint4(i.id * 8 + p.pos + 6)::bigint + 2147483648) % :pool
    WHERE i.project_id = :pid
    RETURNING id, item_id, position
), pairs AS (
    SELECT item_id, min(id) FILTER (WHERE position = 0) AS chosen,
           min(id) FILTER (WHERE position = 1) AS rejected
    FROM r GROUP BY item_id
)
INSERT INTO item_consensus (item_id, project_id, status, source, ranking, pairs, pair_count,
                            agreement, human_labels, confidence, decided_at, computed_at)
SELECT item_id, :pid, 'decided', 'human', jsonb_build_array(chosen, rejected),
       jsonb_build_array(jsonb_build_array(chosen, rejected, 1.0, 2.0)), 1,
       NULL, 1, NULL, :now, :now
FROM pairs
"""


def _pools(seed: int = 11) -> tuple[list[str], list[str]]:
    """Prompt halves (~20 words) and response paragraphs (~30 words, some markdown)."""
    from bench.run import _text

    rng = random.Random(seed)
    halves = [_text(rng, 14, markdown=False) for _ in range(POOL)]
    paragraphs = [_text(rng, 24, markdown=rng.random() < 0.3) for _ in range(POOL)]
    return halves, paragraphs


def seed_project(admin, n: int) -> dict:  # noqa: ANN001
    """A pairwise project with ``n`` items, two responses each, one decided pair each."""
    from sqlalchemy import text

    from app.core.db import get_engine
    from app.models.types import utcnow
    from tests.support import make_project

    project = make_project(admin, task_type="pairwise", k=1, name=PROJECT_NAME.format(n=n))
    halves, paragraphs = _pools()
    now = utcnow().replace(tzinfo=None)
    t0 = time.perf_counter()
    with get_engine().begin() as conn:
        for table, bodies in (("bench_prompt_part", halves), ("bench_paragraph", paragraphs)):
            conn.execute(text(f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, body text) "
                              "ON COMMIT DROP"))
            conn.execute(text(f"INSERT INTO {table} (id, body) VALUES (:id, :body)"),
                         [{"id": i, "body": b} for i, b in enumerate(bodies)])
            conn.execute(text(f"ANALYZE {table}"))
        params = {"pid": project.id, "n": n, "pool": POOL, "now": now}
        conn.execute(text(ITEMS_SQL), params)
        conn.execute(text(RESPONSES_AND_CONSENSUS_SQL), params)
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE items, responses, item_consensus"))
        words = conn.execute(text(
            "SELECT avg(array_length(regexp_split_to_array(prompt #>> '{}', '\\s+'), 1)), "
            "(SELECT avg(array_length(regexp_split_to_array(r.text, '\\s+'), 1)) "
            " FROM responses r JOIN items j ON j.id = r.item_id "
            " WHERE j.project_id = :pid AND j.id % 100 = 0) "
            "FROM items WHERE project_id = :pid AND id % 100 = 0"), {"pid": project.id}).one()
    return {"project_id": project.id, "items": n, "seconds": time.perf_counter() - t0,
            "prompt_words": float(words[0] or 0), "response_words": float(words[1] or 0)}


def find_projects() -> dict[int, int]:
    """Items per seeded bench project, by project id (for --reuse)."""
    from sqlalchemy import text

    from app.core.db import get_engine

    with get_engine().connect() as conn:
        return {pid: n for pid, n in conn.execute(text(
            "SELECT p.id, count(i.id) FROM projects p JOIN items i ON i.project_id = p.id "
            "WHERE p.name LIKE 'Export bench %' GROUP BY p.id"))}


def admin_user():  # noqa: ANN201
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import User
    from tests.support import make_user

    with session_scope() as db:
        user = db.scalar(select(User).where(User.email == ADMIN_EMAIL))
    return user or make_user(ADMIN_EMAIL, admin=True)


# --------------------------------------------------------------------------- building

def queue_snapshot(project_id: int, admin, *, fmt: str, container: str) -> int:  # noqa: ANN001
    """A queued snapshot row, committed, as the HTTP endpoint makes it."""
    from app.core.db import session_scope
    from app.exports.schemas import SnapshotIn
    from app.exports.snapshots import create_snapshot
    from app.models import Project

    with session_scope(write=True) as db:
        project = db.get(Project, project_id)
        spec = SnapshotIn(format=fmt, container=container, margin=True)
        return create_snapshot(db, project=project, user=admin, spec=spec).id


# Run in a fresh interpreter that imports only the app, so its peak memory is the build's.
CHILD = """
import json, resource, sys, time

def vm_kb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])

from app.exports.snapshots import build_snapshot

snapshot_id, profile = int(sys.argv[1]), sys.argv[2]
rss_start = vm_kb("VmRSS")
t0 = time.perf_counter()
if profile:
    import cProfile
    cProfile.run("build_snapshot(snapshot_id=snapshot_id)", profile)
else:
    build_snapshot(snapshot_id=snapshot_id)
print(json.dumps({"seconds": time.perf_counter() - t0, "rss_start_kb": rss_start,
                  "vm_hwm_kb": vm_kb("VmHWM"),
                  "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
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


def run_build(backend: Backend, project_id: int, admin, *, fmt: str, container: str,  # noqa: ANN001
              expected: int, keep: bool, profile: Path | None) -> dict:
    from app.core.db import session_scope
    from app.exports.snapshots import snapshots_root
    from app.models import ExportSnapshot

    snapshot_id = queue_snapshot(project_id, admin, fmt=fmt, container=container)
    cmd = [sys.executable, "-c", CHILD, str(snapshot_id), str(profile or "")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **backend.env),
                          capture_output=True, text=True)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"build of snapshot {snapshot_id} failed:\n{proc.stderr[-4000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    with session_scope() as db:
        snap = db.get(ExportSnapshot, snapshot_id)
        status, rows, manifest, path = snap.status, snap.rows, snap.manifest, snap.path
    if status != "succeeded":
        raise RuntimeError(f"snapshot {snapshot_id} is {status}")
    folder = snapshots_root() / path
    data = manifest["files"][0]
    counted = _data_rows(folder / data["name"])
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = child["seconds"]
    return {"snapshot_id": snapshot_id, "format": fmt, "container": container,
            "rows": rows, "rows_in_file": counted, "rows_ok": rows == counted == expected,
            "seconds": seconds, "process_seconds": process_s,
            "rows_per_s": rows / seconds if seconds else 0.0,
            "rss_start_mb": child["rss_start_kb"] / 1024,
            "peak_rss_mb": child["vm_hwm_kb"] / 1024,
            "ru_maxrss_mb": child["ru_maxrss_kb"] / 1024,
            "file_mb": data["bytes"] / 1e6, "mb_per_s": data["bytes"] / 1e6 / seconds,
            "profile": str(profile.relative_to(ROOT)) if profile else None}


# --------------------------------------------------------------------------- driver

def reuse_backend(name: str) -> Backend:
    data_dir = Path(tempfile.mkdtemp(prefix="tandem-bench-export-"))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    env = {"TANDEM_DATABASE_URL": url, "TANDEM_DATA_DIR": str(data_dir),
           "TANDEM_SECRET_KEY": "bench-secret-" + uuid.uuid4().hex, "TANDEM_BROKER_URL": ""}
    return Backend(kind="postgresql", database_url=url, data_dir=data_dir, env=env,
                   pg_name=name)


def table(builds: list[dict]) -> str:
    head = ["pairs", "format", "container", "rows", "seconds", "rows/s", "peak MB",
            "start MB", "file MB", "target"]
    lines = [head]
    for b in builds:
        ok = b["rows_per_s"] >= ROWS_PER_S_TARGET and b["peak_rss_mb"] < PEAK_MB_TARGET
        lines.append([f"{b['size']:,}", b["format"], b["container"], f"{b['rows']:,}",
                      f"{b['seconds']:.1f}", f"{b['rows_per_s']:,.0f}",
                      f"{b['peak_rss_mb']:.0f}", f"{b['rss_start_mb']:.0f}",
                      f"{b['file_mb']:.0f}",
                      ("ok" if ok else "MISSED") + ("" if b["rows_ok"] else " ROWS?")])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i not in (1, 2) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     for row in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="pairs per project, comma-separated")
    ap.add_argument("--containers", default="jsonl,parquet")
    ap.add_argument("--no-conversational", action="store_true",
                    help="skip the conversational JSONL run at the largest size")
    ap.add_argument("--keep", action="store_true",
                    help="keep the database and the snapshot files afterwards")
    ap.add_argument("--reuse", metavar="DBNAME",
                    help="use a kept tandem_bench_* database; sizes it lacks are seeded")
    ap.add_argument("--profile", action="store_true",
                    help="run each build under cProfile (slower); stats go to bench/results")
    args = ap.parse_args(argv)

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    containers = [c.strip() for c in args.containers.split(",") if c.strip()]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if args.reuse:
        backend = reuse_backend(args.reuse)
    else:
        backend = create_backend("postgresql")
        # Tasks go to a folder broker in the data dir, removed with it; no worker runs them.
        backend.env["TANDEM_BROKER_URL"] = ""
    keep_db = args.keep or bool(args.reuse)
    out: dict = {"timestamp": stamp, "commit": git_commit(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "platform": platform.platform(),
                 "database": backend.pg_name, "sizes": sizes,
                 "targets": {"rows_per_s": ROWS_PER_S_TARGET, "peak_mb": PEAK_MB_TARGET},
                 "seeding": [], "builds": []}
    try:
        if not args.reuse:
            migrate(backend.env)
        backend.apply()
        admin = admin_user()
        existing = {n: pid for pid, n in find_projects().items()}
        projects: dict[int, int] = {}
        for n in sizes:
            if n in existing:
                projects[n] = existing[n]
                print(f"reusing project {existing[n]} with {n:,} items", flush=True)
                continue
            print(f"seeding {n:,} items and pairs...", flush=True)
            seeded = seed_project(admin, n)
            out["seeding"].append(seeded)
            projects[n] = seeded["project_id"]
            print(f"   -> {seeded['seconds']:.1f} s; prompt {seeded['prompt_words']:.0f} words, "
                  f"responses {seeded['response_words']:.0f} words", flush=True)
        runs = [(n, "standard", c) for n in sizes for c in containers]
        if not args.no_conversational and "jsonl" in containers:
            runs.append((max(sizes), "conversational", "jsonl"))
        for n, fmt, container in runs:
            print(f"export {n:,} pairs, {fmt} {container}...", flush=True)
            profile = (RESULTS / f"export-{stamp}-{n}-{fmt}-{container}.pstats"
                       if args.profile else None)
            result = run_build(backend, projects[n], admin, fmt=fmt, container=container,
                               expected=n, keep=args.keep, profile=profile)
            result["size"] = n
            out["builds"].append(result)
            print(f"   -> {result['seconds']:.1f} s, {result['rows_per_s']:,.0f} rows/s, "
                  f"peak {result['peak_rss_mb']:.0f} MB, {result['file_mb']:.0f} MB", flush=True)
            if profile:
                import pstats

                pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)
    finally:
        if not keep_db:
            drop_backend(backend)
        elif args.keep:
            print(f"kept database {backend.pg_name}; data in {backend.data_dir}")
        else:  # --reuse: the database was there before and stays; this run's files go
            shutil.rmtree(backend.data_dir, ignore_errors=True)
    out["total_seconds"] = time.perf_counter() - t_all
    print(f"\nTandem export benchmark: PostgreSQL, {os.cpu_count()} CPUs, commit "
          f"{out['commit']}; target >= {ROWS_PER_S_TARGET:,} rows/s and < {PEAK_MB_TARGET} MB "
          f"peak; total {out['total_seconds']:.0f} s\n")
    print(table(out["builds"]))
    path = RESULTS / f"export-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
