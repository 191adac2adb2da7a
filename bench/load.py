"""Load and concurrency: many labelers over HTTP while judge runs write in worker processes.

    .venv/bin/python -m bench.load [--backend postgresql|sqlite|both] [--labelers 32]
        [--submissions 10000] [--items N] [--k 2] [--judge-workers 2] [--leavers 4]
        [--web-processes 1]

Then checks what must hold whatever the load: every acknowledged label stored exactly once, no
item over k human labels, no labeler twice on an item, no live lease of a labeler who logged
out, and every judge run finished with one AI label per item. Prints one table and writes
bench/results/load-<timestamp>.json. See bench/README.md. tests/load runs a small version.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_WEB_WORKERS,
    REDIS_URL,
    Backend,
    Server,
    cpu_s,
    create_backend,
    drop_backend,
    git_commit,
    migrate,
    serving_pids,
    summary_ms,
    web_workers,
)
from bench.labelers import PASSWORD, Budget, Labeler  # noqa: E402
from bench.load_report import ENDPOINTS, P99_TARGET_MS, table  # noqa: E402
from bench.run import log_findings, make_items  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# The load's Redis database and key prefix: apart from the tests' (13) and bench.run's (14).
LOAD_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/12"


@dataclass
class LoadConfig:
    labelers: int = 32
    submissions: int = 10_000
    items: int | None = None  # default: enough for every submission, with room to spare
    k: int = 2
    judge_workers: int = 2
    judge_runs: int = 1
    leavers: int = 4
    think_ms: float = 0.0
    judge_latency_ms: tuple[float, float] = (50.0, 200.0)  # the stand-in endpoint's delay
    judge_concurrency: int = 16
    judge_timeout_s: float = 600.0
    # Several web processes on one database: each labeler's requests take them in turn.
    web_processes: int = 1
    # uvicorn worker processes in each web server (one per core with PostgreSQL).
    web_workers: int = 1
    worker_queues: str = "judge"

    @property
    def item_count(self) -> int:
        return self.items or math.ceil(self.submissions * 1.1 / self.k) + self.labelers


def broker_env(kind: str, redis_url: str = LOAD_REDIS_URL) -> dict[str, str]:
    """Redis (production) for PostgreSQL; the embedded default's filesystem broker for SQLite."""
    if kind == "sqlite":
        return {"TANDEM_BROKER_URL": "filesystem://"}
    return {"TANDEM_BROKER_URL": redis_url,
            "TANDEM_BROKER_KEY_PREFIX": f"tandem-load-{uuid.uuid4().hex[:10]}:"}


class StandInJudge:
    """An OpenAI-compatible endpoint (tests/judging/fake_openai.py) answering after 50-200 ms,
    as a remote judge would: the workers hold their DB work around real waits."""

    def __init__(self, latency_ms: tuple[float, float]) -> None:
        from tests.judging.fake_openai import FakeOpenAI, completion

        self.fake = FakeOpenAI()
        # "A" in both orders: inconsistent, so every item stays in the human queue.
        self.fake.default = ("json", completion("A", logprobs={"A": 0.9, "B": 0.1}))
        rng, lo, hi = random.Random(3), latency_ms[0] / 1000, latency_ms[1] / 1000
        self.fake.responder = lambda body: time.sleep(rng.uniform(lo, hi))  # None: default
        # http.server listens with a backlog of 5: two workers' 32 concurrent calls overflow
        # it and get refused (the judge's retries hide it, slowly). A real endpoint queues.
        self.fake.server.socket.listen(128)

    def __enter__(self) -> StandInJudge:
        self.fake.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.__exit__(*exc)


def judge_config(cfg: LoadConfig, url: str, model: str):  # noqa: ANN201
    from app.judging.prompts import DEFAULT_TEMPLATE
    from app.judging.schemas import JudgeConfigIn

    return JudgeConfigIn(provider="openai", model=model, base_url=url, template=DEFAULT_TEMPLATE,
                         judge_rules=False, review_fraction=0.0, batch_size=8,
                         max_concurrency=cfg.judge_concurrency, requests_per_minute=1_000_000)


def setup(backend: Backend, cfg: LoadConfig, judge_url: str) -> dict:
    """Admin, labelers, a pairwise project with overlap k, and an API token for the judge."""
    from app.auth.service import create_api_token
    from app.core.config import get_settings
    from app.items.service import import_file
    from tests.support import make_project, make_user, write

    backend.apply()
    admin = make_user("admin@load.example", admin=True, password=PASSWORD)
    emails = [f"labeler{i}@load.example" for i in range(cfg.labelers)]
    users = {e: make_user(e, password=PASSWORD).id for e in emails}
    project = make_project(admin, task_type="pairwise", k=cfg.k, name="Load project",
                           members={e: "labeler" for e in emails})
    # Files small enough to import at once (a larger one would wait for an import worker).
    items, chunk = make_items(cfg.item_count), get_settings().import_sync_limit
    for start in range(0, len(items), chunk):
        data = "\n".join(json.dumps(i) for i in items[start : start + chunk]).encode()
        report = write(import_file, project=project, user=admin, data=data,
                       filename=f"load-{start}.jsonl", file_format="jsonl")
        assert report.ok and report.job_id is None, report.as_dict()
    token = write(create_api_token, user=admin, project_id=project.id, name="load",
                  scopes=["judge", "read"]).secret
    return {"project_id": project.id, "token": token, "emails": emails, "user_ids": users,
            "judge_url": judge_url}


def start_judge_runs(client: httpx.Client, ctx: dict, cfg: LoadConfig) -> tuple[list[int],
                                                                                 list[float]]:
    """Start the judge runs over every item through the API, each under its own model name
    (a run freezes its configuration), so that none is answered from the judge cache."""
    from app.judging import service as judging
    from app.projects.repository import get_project
    from tests.support import write

    ids, seconds = [], []
    for i in range(cfg.judge_runs):
        data = judge_config(cfg, ctx["judge_url"], f"stand-in-judge-{i}")
        write(lambda db, data=data: judging.update_config(
            db, project=get_project(db, project_id=ctx["project_id"]), data=data))
        t0 = time.perf_counter()
        r = client.post(f"/api/v1/projects/{ctx['project_id']}/judge-runs", json={"mode": "all"},
                        timeout=600)
        seconds.append(time.perf_counter() - t0)
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids, seconds


def wait_for_runs(client: httpx.Client, ctx: dict, run_ids: list[int], timeout: float) -> dict:
    """Poll the API until every run is final; returns each run's status and counts."""
    deadline = time.monotonic() + timeout
    while True:  # at least once: timeout=0 reads the runs' state now
        state = {}
        for rid in run_ids:
            body = client.get(f"/api/v1/projects/{ctx['project_id']}/judge-runs/{rid}").json()
            state[rid] = {"status": body["status"], "counts": body["counts"]}
        if (all(s["status"] in ("succeeded", "failed", "cancelled") for s in state.values())
                or time.monotonic() >= deadline):
            return state
        time.sleep(0.5)


def forget_broker_keys(env: dict[str, str]) -> None:
    """Delete this run's keys (queues, bindings, limiter) from the shared Redis."""
    prefix = env.get("TANDEM_BROKER_KEY_PREFIX")
    if not prefix or not env.get("TANDEM_BROKER_URL", "").startswith("redis"):
        return
    import redis

    client = redis.Redis.from_url(env["TANDEM_BROKER_URL"])
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


# Called once the labelers are at work and the judge runs started, with the servers' URLs
# and the context (project id, API token); its result is kept as out["during"].
During = Callable[[list[str], dict], object]


def run_load(backend: Backend, cfg: LoadConfig, logdir: Path,
             during: During | None = None) -> dict:
    """Servers, judge workers and labelers on one migrated backend (its env names the broker:
    see broker_env); returns the results, invariants included."""
    from tests.support import start_worker, stop_process, wait_for

    logdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"backend": backend.kind, "config": asdict(cfg), "items": cfg.item_count}
    t0 = time.perf_counter()
    # The workers boot (imports: seconds) while the data is made in this process.
    logs = [logdir / f"worker{i}.log" for i in range(cfg.judge_workers)]
    workers = [start_worker(backend.env, queues=cfg.worker_queues, log=log) for log in logs]
    try:
        with StandInJudge(cfg.judge_latency_ms) as judge:
            ctx = setup(backend, cfg, judge.fake.base_url)
            out["setup_s"] = time.perf_counter() - t0
            # Judge runs must write while the labelers work, not queue behind a booting worker.
            wait_for(lambda: all(w.poll() is not None or " ready." in log.read_text()
                                 for w, log in zip(workers, logs, strict=True)),
                     timeout=180, interval=0.2, what="the judge workers to be ready")
            assert all(w.poll() is None for w in workers), "a judge worker exited"
            out["workers_ready_s"] = time.perf_counter() - t0
            with ExitStack() as stack:
                servers = [stack.enter_context(Server(backend.env, log=logdir / name,
                                                      workers=cfg.web_workers))
                           for name in (["server.log"] if cfg.web_processes == 1 else
                                        [f"server{i}.log" for i in range(cfg.web_processes)])]
                api = stack.enter_context(httpx.Client(
                    base_url=servers[0].url, timeout=60,
                    headers={"Authorization": f"Bearer {ctx['token']}"}))
                out.update(_drive(servers, api, ctx, cfg, [w.pid for w in workers], during))
            out["judge_calls"] = len(judge.fake.requests)
    finally:
        for w in workers:
            stop_process(w)
    out["invariants"] = check_invariants(ctx, cfg, out)
    out["logs"] = {p.name: log_findings(p) for p in sorted(logdir.glob("*.log"))}
    out["locked_in_logs"] = sum(f["database_locked"] for f in out["logs"].values())
    return out


def _drive(servers: list[Server], api: httpx.Client, ctx: dict, cfg: LoadConfig,
           worker_pids: list[int], during: During | None) -> dict:
    budget = Budget(cfg.submissions)
    gate = threading.Barrier(cfg.labelers + 1)
    halfway = max(1, cfg.submissions // cfg.labelers // 2)
    urls = [s.url for s in servers]
    # Labeler i starts on server i mod n, so that every server takes logins.
    threads = [Labeler(urls[i % len(urls):] + urls[:i % len(urls)], ctx["project_id"], email,
                       budget, gate, seed=i,
                       think_s=cfg.think_ms / 1000,
                       leave_after=halfway if i < cfg.leavers else None)
               for i, email in enumerate(ctx["emails"])]
    for t in threads:
        t.start()
    gate.wait(timeout=300)  # everyone has logged in (argon2: slow on purpose)
    server_pids = [p for s in servers for p in serving_pids(s)]
    cpu0 = (time.process_time(), sum(map(cpu_s, server_pids)),
            sum(map(cpu_s, worker_pids)))
    t0 = time.perf_counter()
    try:
        run_ids, start_s = start_judge_runs(api, ctx, cfg)
        during_out = during(urls, ctx) if during else None
    except BaseException:
        budget.stop()  # no judge load: stop the labelers before giving up
        for t in threads:
            t.join()
        raise
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = [time.process_time() - cpu0[0], sum(map(cpu_s, server_pids)) - cpu0[1],
           sum(map(cpu_s, worker_pids)) - cpu0[2]]
    runs_at_end = wait_for_runs(api, ctx, run_ids, timeout=0)
    runs = wait_for_runs(api, ctx, run_ids, timeout=cfg.judge_timeout_s)
    judge_s = time.perf_counter() - t0
    statuses: Counter[str] = Counter()
    for t in threads:
        statuses.update(t.statuses)
    acked = sum(t.acked for t in threads)
    return {
        "seconds": wall, "acknowledged": acked, "labels_per_s": acked / wall if wall else 0.0,
        "endpoints": {ep: summary_ms([x for t in threads for x in t.times(ep)])
                      for ep in ENDPOINTS},
        "statuses": dict(sorted(statuses.items())),
        "http_5xx": sum(n for k, n in statuses.items() if k.split()[-1].startswith("5")),
        "locked_seen_by_users": sum(t.locked for t in threads),
        "errors": dict(sum((t.errors for t in threads), Counter())),
        "not_saved": dict(sum((t.not_saved for t in threads), Counter())),
        "thread_exceptions": [t.exception for t in threads if t.exception],
        "slow_requests": sorted(
            (datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds"), ep,
             round(took, 3), t.email) for t in threads for ep, start, took in t.slow),
        "queue_empty_seen": any(t.queue_empty for t in threads),
        "per_labeler": [t.acked for t in threads],
        "acked_pairs": [(ctx["user_ids"][t.email], i) for t in threads for i in t.acked_items],
        "leavers": [{"user_id": ctx["user_ids"][t.email], "left": t.left,
                     "held_when_leaving": t.held_when_leaving,
                     "login_at": t.spread.login_at if t.spread else t.url,
                     "logout_at": t.logout_at}
                    for t in threads if t.leave_after is not None],
        # Requests each server took (several web processes only).
        "requests_per_server": dict(sum((t.spread.sent for t in threads if t.spread),
                                        Counter())),
        "during": during_out,
        # CPU seconds per second of labeling: 1.0 is one core busy the whole time.
        "cpu": {"client_core_share": cpu[0] / wall, "server_core_share": cpu[1] / wall,
                "workers_core_share": cpu[2] / wall, "cores": os.cpu_count(),
                "loadavg_1m_after": os.getloadavg()[0]},
        "judge_runs": {str(k): v for k, v in runs.items()},
        "judge_running_when_labeling_ended": sum(
            s["status"] in ("queued", "running") for s in runs_at_end.values()),
        "judge_seconds": judge_s,
        "judge_run_start_s": start_s,  # POST judge-runs: lists every item in one transaction
    }


def check_invariants(ctx: dict, cfg: LoadConfig, out: dict) -> dict:
    """What must hold after the load, read from the database; ``ok`` is all of them."""
    from sqlalchemy import text

    from app.core.db import session_scope
    from app.models.types import utcnow

    p = {"p": ctx["project_id"]}
    acked = Counter(map(tuple, out["acked_pairs"]))
    with session_scope() as db:
        stored = Counter({(u, i): n for u, i, n in db.execute(text(
            "SELECT user_id, item_id, count(*) FROM human_labels WHERE project_id = :p "
            "GROUP BY user_id, item_id"), p)})
        over_k = db.scalar(text(
            "SELECT count(*) FROM (SELECT item_id FROM human_labels WHERE project_id = :p "
            "GROUP BY item_id HAVING count(*) > :k) t"), dict(p, k=cfg.k))
        leaver_ids = [lv["user_id"] for lv in out["leavers"]]
        held = db.scalar(text(
            "SELECT count(*) FROM assignments WHERE status = 'active' AND expires_at > :now "
            "AND user_id IN (" + ",".join(map(str, leaver_ids or [0])) + ")"),
            {"now": utcnow()})
        runs = {str(r): (status, items, labels) for r, status, items, labels in db.execute(text(
            "SELECT r.id, r.status, (SELECT count(*) FROM judge_run_items i WHERE i.run_id = r.id),"
            " (SELECT count(DISTINCT a.item_id) FROM ai_labels a WHERE a.run_id = r.id)"
            " FROM judge_runs r WHERE r.project_id = :p"), p)}
        ai_dups = db.scalar(text(
            "SELECT count(*) FROM (SELECT run_id, item_id FROM ai_labels GROUP BY run_id, item_id "
            "HAVING count(*) > 1) t"))
    checks = {
        "acked_stored_exactly_once": all(stored.get(k) == 1 for k in acked)
        and all(n == 1 for n in acked.values()),
        "no_label_without_ack": set(stored) <= set(acked),
        "no_item_over_k": over_k == 0,
        "no_labeler_twice_on_an_item": all(n == 1 for n in stored.values()),
        "leavers_left_holding_a_lease": all(lv["left"] and lv["held_when_leaving"]
                                            for lv in out["leavers"]),
        "no_lease_held_by_a_leaver": held == 0,
        "judge_runs_succeeded": len(runs) == cfg.judge_runs
        and all(s == "succeeded" for s, _, _ in runs.values()),
        "one_ai_label_per_item_per_run": ai_dups == 0
        and all(items == labels == out["items"] for _, items, labels in runs.values()),
    }
    return {"ok": all(checks.values()), **checks, "labels_stored": sum(stored.values()),
            "acknowledged": sum(acked.values()), "items_over_k": over_k,
            "leaver_leases_live": held, "judge_runs_db": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--labelers", type=int, help="32 on PostgreSQL, 8 on SQLite")
    ap.add_argument("--submissions", type=int, default=10_000)
    ap.add_argument("--items", type=int, help="default: submissions x 1.1 / k + labelers")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--judge-workers", type=int, default=2)
    ap.add_argument("--judge-runs", type=int, default=1)
    ap.add_argument("--leavers", type=int, default=4)
    ap.add_argument("--web-processes", type=int, default=1,
                    help="servers on the one database; each labeler takes them in turn")
    ap.add_argument("--web-workers", default=DEFAULT_WEB_WORKERS,
                    help="uvicorn worker processes per server: N, or per backend")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="mean reading time before each submit (0: back to back)")
    args = ap.parse_args(argv)
    kinds = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    for kind in kinds:
        cfg = LoadConfig(labelers=args.labelers or (32 if kind == "postgresql" else 8),
                         submissions=args.submissions, items=args.items, k=args.k,
                         judge_workers=args.judge_workers, judge_runs=args.judge_runs,
                         leavers=args.leavers, think_ms=args.think_ms,
                         web_processes=args.web_processes,
                         web_workers=web_workers(args.web_workers, kind))
        print(f"== {kind}: {cfg.labelers} labelers, {cfg.submissions} submissions, "
              f"{cfg.item_count} items, {cfg.judge_workers} judge workers, "
              f"{cfg.web_workers} web process(es) per server", flush=True)
        backend = create_backend(kind)
        try:
            migrate(backend.env)
            backend.env.update(broker_env(kind))
            results[kind] = run_load(backend, cfg, RESULTS / f"load-{stamp}-logs" / kind)
            results[kind].pop("acked_pairs")  # thousands of pairs: checked, not kept
        except Exception as exc:  # noqa: BLE001 (report it and go on with the next backend)
            import traceback

            traceback.print_exc()
            results[kind] = {"failed": f"{type(exc).__name__}: {exc}"}
        finally:
            drop_backend(backend)
            forget_broker_keys(backend.env)
    print(f"\nTandem load, commit {git_commit()}, {os.cpu_count()} CPUs, think "
          f"{args.think_ms:.0f} ms; judge: an OpenAI-compatible stand-in answering in 50-200 ms "
          f"(tests/judging/fake_openai.py, in the client process); total "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(table(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"load-{stamp}.json"
    path.write_text(json.dumps({"timestamp": stamp, "commit": git_commit(),
                                "cpus": os.cpu_count(), "python": platform.python_version(),
                                "target_p99_ms": P99_TARGET_MS, "results": results},
                               indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    ok = all(r.get("invariants", {}).get("ok") and r.get("http_5xx") == 0
             and not r.get("locked_seen_by_users") for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
