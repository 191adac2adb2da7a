"""Benchmark Tandem end to end over HTTP: import, concurrent labeling, streamed export.

    .venv/bin/python -m bench.run [--backend sqlite|postgresql|both] [--items 10000]

Prints a table and writes bench/results/<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_WEB_WORKERS,
    Backend,
    BackendTable,
    DiskProbe,
    Server,
    clear_of,
    create_backend,
    disk_dir,
    drop_backend,
    git_commit,
    migrate,
    p99_left_out,
    peak_rss_kb,
    reference_loop_ms,
    reset_peak_rss,
    summary_ms,
    web_workers,
)
from bench.labelers import PASSWORD, Budget, Labeler  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LABELERS = 8  # default; --labelers changes it
K = 1
IMPORT_TARGET_S = 5.0
LATENCY_TARGET_MS = 50.0


# --------------------------------------------------------------------------- data

WORDS = """the model answer question data system user value function result time people way
example should could would because however therefore first second also more most many some
each every other about through between after before during without within against under over
again further then once here there when where why how all both few such only own same than
very just can will make use find give tell work call try ask need feel become leave put mean
keep let begin seem help show hear play run move live believe bring happen write provide sit
stand lose pay meet include continue set learn change lead understand watch follow stop create
speak read allow add spend grow open walk win offer remember love consider appear buy wait
serve die send expect build stay fall cut reach kill remain suggest raise pass sell require
report decide pull process memory network query index table column request response server
client cache latency throughput error retry timeout batch stream record field schema version
""".split()


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _text(rng: random.Random, target_words: int, *, markdown: bool) -> str:
    """About ``target_words`` words in sentences and paragraphs; sometimes a list or code."""
    parts: list[str] = []
    paragraph: list[str] = []
    count = 0
    while count < target_words:
        n = rng.randint(8, 20)
        paragraph.append(_sentence(rng, n))
        count += n
        if markdown and len(paragraph) >= rng.randint(2, 4):
            parts.append(" ".join(paragraph))
            paragraph = []
            if rng.random() < 0.3:
                parts.append("\n".join(f"- {_sentence(rng, rng.randint(4, 9))}"
                                       for _ in range(rng.randint(2, 4))))
            elif rng.random() < 0.1:
                parts.append("```python\nresult = compute(value, retry=3)\nprint(result)\n```")
    if paragraph:
        parts.append(" ".join(paragraph))
    return "\n\n".join(parts)


def make_items(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "external_id": f"bench-{i:06d}",
            "prompt": _text(rng, 40, markdown=False).rstrip(".") + "?",
            "responses": [
                {"text": _text(rng, 150, markdown=True), "model": "model-a"},
                {"text": _text(rng, 150, markdown=True), "model": "model-b"},
            ],
            "metadata": {"source": "bench", "topic": rng.choice(["code", "math", "chat"])},
        }
        for i in range(n)
    ]


# --------------------------------------------------------------------------- setup

def setup_project(backend: Backend, labelers: int) -> dict:
    """Admin, a pairwise project (k=1) with the labelers, and an API token, in-process."""
    from app.auth.service import create_api_token
    from tests.support import make_project, make_user, write

    backend.apply()
    admin = make_user("admin@bench.example", admin=True, password=PASSWORD)
    emails = [f"labeler{i}@bench.example" for i in range(labelers)]
    users = [make_user(e, password=PASSWORD) for e in emails]
    project = make_project(admin, task_type="pairwise", k=K, name="Bench project",
                           members={e: "labeler" for e in emails})
    issued = write(create_api_token, user=admin, project_id=project.id, name="bench",
                   scopes=["import", "export", "read"])
    return {"project_id": project.id, "token": issued.secret, "emails": emails,
            "labeler_ids": [u.id for u in users], "disk_dir": disk_dir(backend)}


# --------------------------------------------------------------------------- 1. import

def bench_import(server: Server, ctx: dict, body: bytes, n: int) -> dict:
    reset_peak_rss(server.pid)  # forget the startup peak (argon2's dummy hash)
    hwm_before = peak_rss_kb(server.pid)
    t0 = time.perf_counter()
    r = httpx.post(f"{server.url}/api/v1/projects/{ctx['project_id']}/items", content=body,
                   headers={"Authorization": f"Bearer {ctx['token']}",
                            "Content-Type": "application/json"}, timeout=600)
    elapsed = time.perf_counter() - t0
    report = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    ok = r.status_code == 200 and report.get("created") == n
    if not ok:
        print(f"  import: HTTP {r.status_code} {r.text[:300]}", file=sys.stderr)
    # Also time until the API shows every item: should the commit ever land after the
    # response (FastAPI's default dependency scope does that), this figure shows it.
    visible = None
    while ok and time.perf_counter() - t0 < 120:
        p = httpx.get(f"{server.url}/api/v1/projects/{ctx['project_id']}",
                      headers={"Authorization": f"Bearer {ctx['token']}"}, timeout=60)
        if p.status_code == 200 and p.json()["progress"]["total"] >= n:
            visible = time.perf_counter() - t0
            break
        time.sleep(0.01)
    return {"status": r.status_code, "ok": ok, "created": report.get("created"),
            "body_bytes": len(body), "seconds": elapsed, "items_per_s": n / elapsed,
            "visible_s": visible,
            "server_peak_rss_before_mb": hwm_before / 1024,
            "server_peak_rss_after_mb": peak_rss_kb(server.pid) / 1024,
            "target_s": IMPORT_TARGET_S,
            "meets_target": ok and max(elapsed, visible or 0.0) < IMPORT_TARGET_S}


# --------------------------------------------------------------------------- 2. labeling

def bench_labeling(server: Server, ctx: dict, labels: int, think_ms: float = 0.0) -> dict:
    budget = Budget(labels)
    gate = threading.Barrier(len(ctx["emails"]) + 1)
    threads = [Labeler(server.url, ctx["project_id"], email, budget, gate, seed=i,
                       think_s=think_ms / 1000)
               for i, email in enumerate(ctx["emails"])]
    for t in threads:
        t.start()
    gate.wait(timeout=120)  # everyone logged in
    t0 = time.perf_counter()
    with DiskProbe(ctx["disk_dir"]) as disk:
        for t in threads:
            t.join()
    wall = time.perf_counter() - t0
    stalls = disk.stalls()
    next_s = [x for t in threads for x in t.next_s]
    submit_s = [x for t in threads for x in t.submit_s]
    errors: Counter[str] = Counter()
    not_saved: Counter[str] = Counter()
    for t in threads:
        errors.update(t.errors)
        not_saved.update(t.not_saved)
    acked = sum(t.acked for t in threads)
    nxt, sub = summary_ms(next_s), summary_ms(submit_s)
    return {
        "labelers": len(ctx["emails"]), "think_ms": think_ms, "requested": labels,
        "acknowledged": acked,
        "ties": sum(t.ties for t in threads),
        "seconds": wall, "labels_per_s": acked / wall if wall else 0.0,
        "next": nxt, "submit": sub,
        "errors": dict(errors), "error_count": sum(errors.values()),
        "not_saved": dict(not_saved),
        "thread_exceptions": [t.exception for t in threads if t.exception],
        "queue_empty_seen": any(t.queue_empty for t in threads),
        "per_labeler": [t.acked for t in threads],
        # Each labeler's submit p50 / p99: labelers served by a busier web process (each
        # process keeps the connections it accepted) stand out here.
        "per_labeler_submit_ms": [[summary_ms(t.submit_s)["p50_ms"],
                                   summary_ms(t.submit_s)["p99_ms"]] for t in threads],
        "target_p99_ms": LATENCY_TARGET_MS,
        "meets_target": (nxt["p99_ms"] < LATENCY_TARGET_MS
                         and sub["p99_ms"] < LATENCY_TARGET_MS),
        # The disk under the database (DiskProbe), and the submits that no stall of it met.
        "disk": disk.summary(),
        "submit_clear_of_disk_stalls": summary_ms(
            clear_of([x for t in threads for x in t.spans["submit"]], stalls)),
    }


def verify_labels(ctx: dict, acknowledged: int) -> dict:
    from sqlalchemy import text

    from app.core.db import session_scope

    p = {"p": ctx["project_id"]}
    with session_scope() as db:
        labels = db.scalar(text("SELECT count(*) FROM human_labels WHERE project_id = :p"), p)
        max_per_item = db.scalar(text(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM human_labels "
            "WHERE project_id = :p GROUP BY item_id) t"), p)
        over_k = db.scalar(text(
            "SELECT count(*) FROM (SELECT item_id FROM human_labels WHERE project_id = :p "
            "GROUP BY item_id HAVING count(*) > :k) t"), dict(p, k=K))
        dup = db.scalar(text(
            "SELECT count(*) FROM (SELECT item_id, user_id FROM human_labels "
            "WHERE project_id = :p GROUP BY item_id, user_id HAVING count(*) > 1) t"), p)
        active_per_user = db.scalar(text(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM assignments "
            "WHERE project_id = :p AND status = 'active' GROUP BY user_id) t"), p)
        statuses = dict(db.execute(text(
            "SELECT status, count(*) FROM assignments WHERE project_id = :p GROUP BY status"),
            p).all())
    ok = labels == acknowledged and max_per_item <= K and over_k == 0 and dup == 0
    return {"ok": ok, "human_labels": labels, "acknowledged": acknowledged,
            "max_labels_per_item": max_per_item, "items_over_k": over_k,
            "duplicate_item_user": dup, "max_active_leases_per_user": active_per_user,
            "assignment_statuses": statuses}


# --------------------------------------------------------------------------- 3. export

def fill_labels(ctx: dict, target_items: int) -> dict:
    """Label unlabeled items directly in the DB (bulk inserts) until ``target_items`` have a
    label: choice 'a', strength 2, as the labelers in turn."""
    from sqlalchemy import bindparam, func, insert, select, update

    from app.core.db import session_scope
    from app.models import Assignment, HumanLabel, Item, Response
    from app.models.labels import AssignmentStatus
    from app.models.types import utcnow

    pid, users = ctx["project_id"], ctx["labeler_ids"]
    t0 = time.perf_counter()
    with session_scope(write=True) as db:
        labeled = db.scalar(select(func.count(func.distinct(HumanLabel.item_id)))
                            .where(HumanLabel.project_id == pid)) or 0
        need = target_items - labeled
        if need <= 0:
            return {"added": 0, "seconds": 0.0}
        has_label = select(HumanLabel.id).where(HumanLabel.item_id == Item.id).exists()
        item_ids = list(db.scalars(
            select(Item.id).where(Item.project_id == pid, Item.ready, ~has_label)
            .order_by(Item.id).limit(need)))
        wanted = set(item_ids)
        # An item someone holds a lease on: that labeler's assignment becomes the submitted one.
        existing: dict[int, Assignment] = {}
        had: dict[int, set[int]] = {}  # (item, user) is unique in assignments
        for a in db.scalars(select(Assignment).where(Assignment.project_id == pid)):
            if a.item_id in wanted:
                had.setdefault(a.item_id, set()).add(a.user_id)
                if a.status == AssignmentStatus.ACTIVE:
                    existing.setdefault(a.item_id, a)
        now = utcnow()
        if existing:
            t = Assignment.__table__
            db.execute(update(t).where(t.c.id == bindparam("aid"))
                       .values(status=AssignmentStatus.SUBMITTED, finished_at=now),
                       [{"aid": a.id} for a in existing.values()])
        new_rows = []
        for n, iid in enumerate(i for i in item_ids if i not in existing):
            free = [u for u in users if u not in had.get(iid, ())]
            new_rows.append({"project_id": pid, "item_id": iid,
                             "user_id": free[n % len(free)],
                             "status": AssignmentStatus.SUBMITTED, "leased_at": now,
                             "expires_at": now, "finished_at": now})
        if new_rows:
            db.execute(insert(Assignment), new_rows)
        pairs: dict[int, dict[int, int]] = {}
        for item_id, pos, rid in db.execute(
                select(Response.item_id, Response.position, Response.id)
                .join(Item, Item.id == Response.item_id)
                .where(Item.project_id == pid, Response.position < 2)):
            pairs.setdefault(item_id, {})[pos] = rid
        todo = db.execute(
            select(Assignment.id, Assignment.item_id, Assignment.user_id)
            .where(Assignment.project_id == pid,
                   Assignment.status == AssignmentStatus.SUBMITTED,
                   ~select(HumanLabel.id).where(HumanLabel.item_id == Assignment.item_id)
                   .exists())).all()
        db.execute(insert(HumanLabel), [
            {"project_id": pid, "item_id": item_id, "user_id": user_id, "assignment_id": aid,
             "idempotency_key": f"bench-fill-{aid}", "task_type": "pairwise",
             "response_a_id": pairs[item_id][0], "response_b_id": pairs[item_id][1],
             "choice": "a", "strength": 2, "rule_violations": {}, "rationale": "",
             "time_spent_ms": 1000, "created_at": now}
            for aid, item_id, user_id in todo
        ])
        # What the labeling service does per label, in bulk: recount, and mark the items'
        # consensus for recomputing (the export refreshes it before streaming).
        db.execute(update(Item).where(Item.project_id == pid, Item.id.in_(
            [item_id for _, item_id, _ in todo])).values(
            consensus_stale=True, label_count=select(func.count()).select_from(HumanLabel)
            .where(HumanLabel.item_id == Item.id).scalar_subquery()))
        added = len(todo)
    return {"added": added, "seconds": time.perf_counter() - t0}


def count_labels(ctx: dict) -> int:
    from sqlalchemy import text

    from app.core.db import session_scope

    with session_scope() as db:
        return db.scalar(text("SELECT count(*) FROM human_labels WHERE project_id = :p"),
                         {"p": ctx["project_id"]})


def bench_export(backend: Backend, ctx: dict, log: Path) -> dict:
    """Restart the server and stream the export (bench.export's measure of it)."""
    from bench.export import bench_stream_export

    labels = count_labels(ctx)
    with Server(backend.env, log=log) as server:
        startup_hwm = peak_rss_kb(server.pid)
        out = bench_stream_export(server.url, ctx["project_id"], ctx["token"], server.pid,
                                  database=backend.pg_name)
    return {"labels": labels, "startup_peak_rss_mb": startup_hwm / 1024,
            "peak_rss_after_mb": out["peak_rss_mb"], **out}


# --------------------------------------------------------------------------- driver

def log_findings(log: Path) -> dict[str, int]:
    """Count worrying lines in the server log (tracebacks, lock errors, 5xx)."""
    patterns = {"traceback": "Traceback", "database_locked": "database is locked",
                "deadlock": "deadlock", "serialization": "could not serialize",
                "http_5xx": '" 5'}
    text = log.read_text(errors="replace") if log.exists() else ""
    return {k: text.count(p) for k, p in patterns.items()}


def run_backend(out: dict, kind: str, items: list[dict], body: bytes, labels: int,
                labelers: int, stamp: str, keep: bool, think_ms: float = 0.0,
                web_spec: str = DEFAULT_WEB_WORKERS) -> None:
    """Run every phase on a fresh database, filling ``out`` as it goes."""
    print(f"\n== {kind}: fresh database", flush=True)
    backend = create_backend(kind)
    logdir = RESULTS / f"{stamp}-logs"
    log = logdir / f"{kind}-server.log"
    out["database"] = backend.database_url.split("@")[-1]
    out["web_workers"] = web_workers(web_spec, kind)
    try:
        migrate(backend.env)
        ctx = setup_project(backend, labelers)
        env = dict(backend.env, TANDEM_IMPORT_SYNC_LIMIT="1000000")
        with Server(env, log=log, workers=web_workers(web_spec, kind)) as server:
            print(f"   import {len(items)} items ({len(body) / 1e6:.1f} MB JSON)...", flush=True)
            out["import"] = bench_import(server, ctx, body, len(items))
            print(f"   -> {out['import']['seconds']:.2f} s", flush=True)
            print(f"   labeling: {labelers} labelers, {labels} labels...", flush=True)
            out["labeling"] = bench_labeling(server, ctx, labels, think_ms)
            lab = out["labeling"]
            print(f"   -> {lab['seconds']:.1f} s, next p99 {lab['next']['p99_ms']:.1f} ms, "
                  f"submit p99 {lab['submit']['p99_ms']:.1f} ms, errors {lab['error_count']}",
                  flush=True)
        out["verify"] = verify_labels(ctx, out["labeling"]["acknowledged"])
        print(f"   verify: {'ok' if out['verify']['ok'] else 'FAILED'} {out['verify']}",
              flush=True)
        n = len(items)
        small = max(1, n // 4)
        out["fill_small"] = fill_labels(ctx, small)
        print(f"   export at {count_labels(ctx)} labels...", flush=True)
        out["export_small"] = bench_export(backend, ctx, log)
        out["fill_full"] = fill_labels(ctx, n)
        print(f"   export at {count_labels(ctx)} labels...", flush=True)
        out["export_full"] = bench_export(backend, ctx, log)
    finally:
        out["server_log"] = {"path": str(log.relative_to(ROOT)), **log_findings(log)}
        if keep:
            print(f"   kept {backend.database_url} ({backend.data_dir})")
        else:
            drop_backend(backend)


def _f(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: dict[str, dict]) -> str:
    t = BackendTable(results)
    add = t.add

    def ok(b: bool) -> str:
        return "yes" if b else "NO"

    add("web server processes", lambda r: str(r.get("web_workers", 1)))
    add("import: seconds (target < 5)", lambda r: _f(r["import"]["seconds"], ".2f"))
    add("import: items/s", lambda r: _f(r["import"]["items_per_s"], ".0f"))
    add("import: seconds until API shows all", lambda r: _f(r["import"]["visible_s"], ".2f"))
    add("import: HTTP status / created",
        lambda r: f"{r['import']['status']} / {r['import']['created']}")
    add("import: server peak RSS MB", lambda r: _f(r["import"]["server_peak_rss_after_mb"]))
    add("import: meets target", lambda r: ok(r["import"]["meets_target"]))
    add("label: labels acknowledged", lambda r: str(r["labeling"]["acknowledged"]))
    add("label: seconds", lambda r: _f(r["labeling"]["seconds"]))
    add("label: labels/s", lambda r: _f(r["labeling"]["labels_per_s"]))
    for ep in ("next", "submit"):
        add(f"label: {ep} calls", lambda r, ep=ep: str(r["labeling"][ep]["count"]))
        for q in ("p50", "p90", "p99", "max"):
            add(f"label: {ep} {q} ms", lambda r, ep=ep, q=q: _f(r["labeling"][ep][f"{q}_ms"]))
        add(f"label: {ep} calls over 50 ms", lambda r, ep=ep: str(r["labeling"][ep]["over_50ms"]))
    add("label: per-labeler min / max", lambda r: f"{min(r['labeling']['per_labeler'])} / "
                                                  f"{max(r['labeling']['per_labeler'])}")
    add("label: errors (non-200)", lambda r: str(r["labeling"]["error_count"]))
    add("label: not saved (200, conflict)", lambda r: str(sum(r["labeling"]["not_saved"].values())))
    add("label: p99 < 50 ms both", lambda r: ok(r["labeling"]["meets_target"]))
    add("disk: fdatasync p50 / max ms (probe)",
        lambda r: f"{_f(r['labeling']['disk']['p50_ms'], '.2f')} / "
                  f"{_f(r['labeling']['disk']['max_ms'], '.0f')}")
    add("disk: stalls > 50 ms while labeling",
        lambda r: str(r["labeling"]["disk"]["stalls_over_50ms"]))
    add("label: submit p99 ms, calls a stall met left out",
        lambda r: p99_left_out(r["labeling"]["submit"],
                               r["labeling"]["submit_clear_of_disk_stalls"]))
    add("verify: labels == acks, <=k, no dup", lambda r: ok(r["verify"]["ok"]))
    for key, title in (("export_small", "export@25%"), ("export_full", "export@100%")):
        add(f"{title}: labels", lambda r, key=key: str(r[key]["labels"]))
        add(f"{title}: rows", lambda r, key=key: str(r[key]["rows"]))
        add(f"{title}: MB", lambda r, key=key: _f(r[key]["bytes"] / 1e6))
        add(f"{title}: seconds", lambda r, key=key: _f(r[key]["seconds"], ".2f"))
        add(f"{title}: rows/s", lambda r, key=key: _f(r[key]["rows_per_s"], ".0f"))
        add(f"{title}: time to first byte s", lambda r, key=key: _f(r[key]["first_byte_s"], ".2f"))
        add(f"{title}: RSS before export MB", lambda r, key=key: _f(r[key]["rss_before_mb"]))
        add(f"{title}: peak RSS (VmHWM) after MB",
            lambda r, key=key: _f(r[key]["peak_rss_after_mb"]))
        add(f"{title}: peak RSS growth MB", lambda r, key=key: _f(r[key]["peak_rss_growth_mb"]))
    add("server log: tracebacks", lambda r: str(r["server_log"]["traceback"]))
    add("server log: 5xx / locked",
        lambda r: f"{r['server_log']['http_5xx']} / {r['server_log']['database_locked']}")

    return t.render()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--labels", type=int, default=2_000, help="labels submitted over HTTP")
    ap.add_argument("--labelers", type=int, default=LABELERS, help="concurrent labelers")
    ap.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="mean time a labeler reads an item before submitting (0: back to back)")
    ap.add_argument("--web-workers", default=DEFAULT_WEB_WORKERS,
                    help="web processes: N, or per backend as in the default")
    args = ap.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    t0 = time.perf_counter()
    speed_ms = [reference_loop_ms()]  # at the start, and at the end
    items = make_items(args.items)
    body = json.dumps({"items": items}).encode()
    words = sum(len(i["prompt"].split()) + sum(len(r["text"].split()) for r in i["responses"])
                for i in items) / len(items)
    print(f"generated {len(items)} items, {words:.0f} words each on average, "
          f"{len(body) / 1e6:.1f} MB", flush=True)

    results: dict[str, dict] = {}
    for kind in kinds:
        results[kind] = {}
        try:
            run_backend(results[kind], kind, items, body, args.labels, args.labelers, stamp,
                        args.keep, args.think_ms, args.web_workers)
        except Exception as exc:  # noqa: BLE001 (report it and go on with the next backend)
            import traceback

            traceback.print_exc()
            results[kind]["failed"] = f"{type(exc).__name__}: {exc}"

    speed_ms.append(reference_loop_ms())
    print(f"\nTandem benchmark, {args.items} items, {args.labels} labels by {args.labelers} "
          f"labelers (think {args.think_ms:.0f} ms), k={K}; {os.cpu_count()} CPUs; "
          f"commit {git_commit()}; reference loop {speed_ms[0]:.0f} / {speed_ms[1]:.0f} ms "
          f"(start / end; machine speed, lower is faster); "
          f"total {time.perf_counter() - t0:.0f} s\n")
    print(table(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps({
        "timestamp": stamp, "commit": git_commit(), "cpus": os.cpu_count(),
        "reference_loop_ms": speed_ms, "python": platform.python_version(),
        "platform": platform.platform(),
        "config": {"items": args.items, "labels": args.labels, "labelers": args.labelers, "k": K,
                   "think_ms": args.think_ms,
                   "avg_words_per_item": words, "import_body_bytes": len(body)},
        "targets": {"import_s": IMPORT_TARGET_S, "label_p99_ms": LATENCY_TARGET_MS},
        "results": results,
        "total_seconds": time.perf_counter() - t0,
    }, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0 if all("failed" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
