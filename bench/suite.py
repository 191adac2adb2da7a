"""Issue 7's benchmark suite: every workload, on SQLite and on PostgreSQL + Redis, one table.

    .venv/bin/python -m bench.suite [--backends sqlite,postgresql] [--workloads 1,2,3,4,5,6,7]
                                    [--large 1000000] [--web-workers 1] [--quick]

Starts the server (and the workers a workload needs) itself on loopback, on a fresh database
per workload and backend, drives it over HTTP as real clients do, and prints one table with the
target and Label Studio's figure on the same workload beside each measure. Writes
bench/results/suite-<timestamp>.json with every figure and the logs beside it. See
bench/README.md for what each workload does; ``--quick`` is a smoke run (10k instead of 1M,
fewer calls and pairs): its figures are not the issue's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_WEB_WORKERS,
    DiskProbe,
    RssSampler,
    Server,
    clear_of,
    cpu_s,
    create_backend,
    drop_backend,
    git_commit,
    migrate,
    p99_left_out,
    postgres_backends,
    reference_loop_ms,
    rss_kb,
    server_pids,
    serving_pids,
    summary_ms,
    web_workers,
)

RESULTS = ROOT / "bench" / "results"
BACKENDS = ("sqlite", "postgresql")
LABELERS = 8


# --------------------------------------------------------------------------- processes

def web_rss_mb(server: Server) -> float:
    """Resident memory of the serving processes, all together."""
    return sum(rss_kb(p) for p in serving_pids(server)) / 1024


def web_rss_each_mb(server: Server) -> float:
    """Resident memory of the largest serving process (the issue's target is per process)."""
    return max(rss_kb(p) for p in serving_pids(server)) / 1024


def loads_torch(pid: int) -> bool:
    """Whether the process has torch or transformers loaded (their files in its memory map)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "/torch/" in maps or "/transformers/" in maps


# --------------------------------------------------------------------------- workloads 1-3, 7

def next_item(server: Server, ctx: dict, labelers: int, calls: int) -> dict:
    """``calls`` item hand-outs per labeler (next, then skip -> next), ``labelers`` at once."""
    from bench.labelers import Skipper

    gate = threading.Barrier(labelers + 1)
    threads = [Skipper(server.url, ctx["project_id"], ctx["emails"][i], calls, gate)
               for i in range(labelers)]
    for t in threads:
        t.start()
    gate.wait(timeout=120)
    t0 = time.perf_counter()
    with DiskProbe(ctx["disk_dir"]) as disk:
        for t in threads:
            t.join()
    wall = time.perf_counter() - t0
    errors: Counter[str] = Counter()
    for t in threads:
        errors.update(t.errors)
    times = [x for t in threads for x in t.times]
    return {"labelers": labelers, "calls": len(times), "seconds": wall,
            "per_s": len(times) / wall if wall else 0.0, **summary_ms(times),
            "errors": dict(errors), "thread_exceptions": [t.exception for t in threads
                                                          if t.exception],
            "disk": disk.summary(),
            "clear_of_disk_stalls": summary_ms(
                clear_of([x for t in threads for x in t.spans], disk.stalls()))}


def label_workloads(kind: str, args: argparse.Namespace, logdir: Path) -> dict:
    """Workloads 1 (import), 2 (next item), 3 (submit) and 7 (memory) on one server."""
    from bench.imports import bench_bulk_import, setup_project_named
    from bench.run import bench_import, bench_labeling, make_items, setup_project, verify_labels

    out: dict = {}
    backend = create_backend(kind)
    try:
        migrate(backend.env)
        ctx = setup_project(backend, LABELERS)
        items = make_items(args.items)
        body = json.dumps({"items": items}).encode()
        env = dict(backend.env, TANDEM_IMPORT_SYNC_LIMIT="1000000")
        with Server(env, log=logdir / f"{kind}-label-server.log",
                    workers=web_workers(args.web_workers, kind)) as server:
            auth = {"Authorization": f"Bearer {ctx['token']}"}
            for _ in range(3):  # what a first visitor does: the login page and the API
                httpx.get(f"{server.url}/login", timeout=30)
                httpx.get(f"{server.url}/api/v1/projects/{ctx['project_id']}", headers=auth,
                          timeout=30)
            time.sleep(1)
            out["memory_idle"] = {"web_rss_mb": web_rss_each_mb(server),
                                  "web_rss_all_mb": web_rss_mb(server),
                                  "processes": len(serving_pids(server)),
                                  "torch_loaded": any(loads_torch(p)
                                                      for p in server_pids(server))}
            print(f"   web idle {out['memory_idle']['web_rss_mb']:.0f} MB", flush=True)

            print(f"   1. import {args.items:,} items in one request", flush=True)
            out["import"] = bench_import(server, ctx, body, len(items))
            print(f"      {out['import']['seconds']:.2f} s", flush=True)

            print(f"   2. next item: 1 labeler x {args.next_calls}, then {LABELERS} at once",
                  flush=True)
            out["next_1"] = next_item(server, ctx, 1, args.next_calls)
            out["next_8"] = next_item(server, ctx, LABELERS, args.next_calls)
            print(f"      p99 {out['next_1']['p99_ms']:.1f} / {out['next_8']['p99_ms']:.1f} ms",
                  flush=True)

            print(f"   3. submit: {args.labels:,} labels by {LABELERS} labelers", flush=True)
            serving = serving_pids(server)
            sampler = RssSampler(interval=0.05, pids=lambda: serving)
            each = [RssSampler(p, interval=0.05) for p in serving]
            pg0 = {p: cpu_s(p, 0.0) for p in postgres_backends(backend.pg_name)}
            cpu0 = (time.process_time(), sum(cpu_s(p, 0.0) for p in serving))
            with sampler, ExitStack() as sampling:
                for one in each:
                    sampling.enter_context(one)
                out["submit"] = bench_labeling(server, ctx, args.labels)
            acked = max(1, out["submit"]["acknowledged"])
            out["submit"]["cpu_ms_per_label"] = {  # holds when other work slows the clock
                "load_generator": 1000 * (time.process_time() - cpu0[0]) / acked,
                "web": 1000 * (sum(cpu_s(p, 0.0) for p in serving) - cpu0[1]) / acked,
                "postgresql": 1000 * sum(cpu_s(p, 0.0) - pg0.get(p, 0.0)
                                         for p in postgres_backends(backend.pg_name)) / acked,
            }
            out["memory_submit"] = {"web_rss_max_mb": max(one.max_kb for one in each) / 1024,
                                    "web_rss_all_max_mb": sampler.max_kb / 1024,
                                    "web_rss_after_mb": web_rss_mb(server),
                                    "torch_loaded": any(loads_torch(p)
                                                        for p in server_pids(server))}
            lab = out["submit"]
            cpu = lab["cpu_ms_per_label"]
            print(f"      {lab['labels_per_s']:.0f} labels/s, submit p99 "
                  f"{lab['submit']['p99_ms']:.1f} ms; CPU ms per label: web {cpu['web']:.2f}, "
                  f"PostgreSQL {cpu['postgresql']:.2f}, load generator "
                  f"{cpu['load_generator']:.2f}", flush=True)
            out["verify"] = verify_labels(ctx, lab["acknowledged"])

            if args.large:
                print(f"   1. import {args.large:,} items in batches of {args.batch:,}",
                      flush=True)
                bulk = setup_project_named(backend, "Bulk import")
                out["import_large"] = bench_bulk_import(server.url, bulk["project_id"],
                                                        bulk["token"], args.large, args.batch)
                print(f"      {out['import_large']['items_per_s']:,.0f} items/s", flush=True)
    finally:
        drop_backend(backend)
    return out


# --------------------------------------------------------------------------- workload 4

def list_workloads(kind: str, args: argparse.Namespace) -> dict:
    from bench.items_list import measure

    out = {}
    for n in args.list_sizes:
        print(f"   4. item list and dashboard at {n:,} items", flush=True)
        rows = measure(kind, n, args.list_calls, keep=False)
        out[str(n)] = rows
        lists = [r for r in rows if not r["page"].startswith("dashboard")]
        print(f"      list p99 max {max(r['p99_ms'] for r in lists):.1f} ms", flush=True)
    return out


# --------------------------------------------------------------------------- workload 5

def export_workloads(kind: str, args: argparse.Namespace, logdir: Path) -> dict:
    from bench import export

    out = {}
    for n in args.export_sizes:
        print(f"   5. export of {n:,} pairs", flush=True)
        backend = create_backend(kind)
        try:
            migrate(backend.env)
            backend.apply()
            seeded = export.seed_pairs(backend, n)
            with Server(backend.env, log=logdir / f"{kind}-export-server.log") as server:
                stream = export.bench_stream_export(server.url, seeded["project_id"],
                                                    seeded["token"], server.pid,
                                                    expected=seeded.get("pairs"),
                                                    database=backend.pg_name)
            snapshot = export.bench_snapshot(backend, seeded["project_id"], "jsonl",
                                             expected=seeded.get("pairs"))
            out[str(n)] = {"seeded": seeded, "stream": stream, "snapshot": snapshot}
            print(f"      stream {stream.get('rows_per_s', 0):,.0f} rows/s, snapshot "
                  f"{snapshot.get('rows_per_s', 0):,.0f} rows/s", flush=True)
        finally:
            drop_backend(backend)
    return out


# --------------------------------------------------------------------------- workload 6

def judge_workload(kind: str, args: argparse.Namespace) -> dict:
    from bench.judge import bench_judge

    print(f"   6. judge: {args.pairs} pairs, local provider", flush=True)
    out = bench_judge(kind, pairs=args.pairs)
    print(f"      {out.get('pairs_per_s', 0):.2f} pairs/s "
          f"(raw forward {out.get('raw_forward_pairs_per_s', 0):.2f})", flush=True)
    return out


# --------------------------------------------------------------------------- the table

def _get(result: dict, *path: str) -> object:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def _num(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


ROWS: list[tuple[str, str, str, Callable[[dict], str]]] = []


def row(name: str, target: str, label_studio: str) -> Callable:
    def add(fn: Callable[[dict], str]) -> Callable[[dict], str]:
        ROWS.append((name, target, label_studio, fn))
        return fn
    return add


def _list_p99(r: dict, n: str, dashboard: bool) -> str:
    rows = _get(r, "list", n)
    if not rows:
        return "-"
    chosen = [x["p99_ms"] for x in rows if x["page"].startswith("dashboard") == dashboard]
    return f"{max(chosen):.1f}" if chosen else "-"


def _p99_clear_of_disk_stalls(r: dict) -> str:
    """Workloads 2 (8 labelers) and 3 without the calls a disk stall met (DiskProbe)."""
    hand_out, submit = _get(r, "label", "next_8"), _get(r, "label", "submit")
    return (f"{p99_left_out(hand_out, hand_out['clear_of_disk_stalls'])} / "
            f"{p99_left_out(submit['submit'], submit['submit_clear_of_disk_stalls'])}")


def build_rows(args: argparse.Namespace) -> None:
    ROWS.clear()
    row(f"1. import {args.items:,} items, one request (s)", "< 1", "2.15")(
        lambda r: _num(_get(r, "label", "import", "seconds"), ".2f"))
    row(f"1. import {args.large:,} items in batches of {args.batch:,} (items/s)", "> 20,000", "")(
        lambda r: _num(_get(r, "label", "import_large", "items_per_s"), ",.0f"))
    row(f"2. next item, 1 labeler, p50 / p99 ms ({args.next_calls} calls)", "", "74 / 88")(
        lambda r: f"{_num(_get(r, 'label', 'next_1', 'p50_ms'), '.1f')} / "
                  f"{_num(_get(r, 'label', 'next_1', 'p99_ms'), '.1f')}")
    row(f"2. next item, {LABELERS} labelers at once, p50 / p99 ms", "p99 < 15", "p99 5,800")(
        lambda r: f"{_num(_get(r, 'label', 'next_8', 'p50_ms'), '.1f')} / "
                  f"{_num(_get(r, 'label', 'next_8', 'p99_ms'), '.1f')}")
    row(f"3. next then submit, {LABELERS} labelers (labels/s)", "> 400", "5.9")(
        lambda r: _num(_get(r, "label", "submit", "labels_per_s"), ".0f"))
    row("3. submit (with the next item) p50 / p99 ms", "p99 < 50", "578 / 1,444")(
        lambda r: f"{_num(_get(r, 'label', 'submit', 'submit', 'p50_ms'), '.1f')} / "
                  f"{_num(_get(r, 'label', 'submit', 'submit', 'p99_ms'), '.1f')}")
    row("2./3. disk stalls > 50 ms meanwhile (fdatasync probe)", "", "")(
        lambda r: f"{_get(r, 'label', 'next_8', 'disk', 'stalls_over_50ms')} / "
                  f"{_get(r, 'label', 'submit', 'disk', 'stalls_over_50ms')}")
    row("2./3. p99 ms of the calls no disk stall met", "", "")(_p99_clear_of_disk_stalls)
    row("3. every acknowledged label stored once, none over k", "yes", "7% over")(
        lambda r: {True: "yes", False: "NO", None: "-"}[_get(r, "label", "verify", "ok")])
    for n in args.list_sizes:
        row(f"4. item list at {n:,}, worst p99 of first/deep/filters (ms)",
            "< 50" if n >= 1_000_000 else "", "p99 439 (10k)" if n == 10_000 else "")(
            lambda r, n=str(n): _list_p99(r, n, False))
        row(f"4. dashboard at {n:,}, p99 (ms)", "< 300" if n >= 1_000_000 else "", "")(
            lambda r, n=str(n): _list_p99(r, n, True))
    for n in args.export_sizes:
        row(f"5. export {n:,} pairs, API stream (rows/s)", "> 100,000" if n >= 1_000_000
            else "", "635 (2,000 in 3.15 s)" if n == 10_000 else "")(
            lambda r, n=str(n): _num(_get(r, "export", n, "stream", "rows_per_s"), ",.0f"))
        row(f"5. export {n:,} pairs, API stream peak MB (server)", "< 300", "")(
            lambda r, n=str(n): _num(_get(r, "export", n, "stream", "server_peak_mb"), ".0f"))
        row(f"5. export {n:,} pairs, snapshot job (rows/s)", "> 100,000" if n >= 1_000_000
            else "", "")(
            lambda r, n=str(n): _num(_get(r, "export", n, "snapshot", "rows_per_s"), ",.0f"))
        row(f"5. export {n:,} pairs, snapshot peak MB (builder)", "< 300", "")(
            lambda r, n=str(n): _num(_get(r, "export", n, "snapshot", "peak_mb"), ".0f"))
    row("6. judge run, local provider, both orders (pairs/s)", "", "")(
        lambda r: _num(_get(r, "judge", "pairs_per_s"), ".2f"))
    row("6. raw forward pass on the same prompts (pairs/s)", "", "")(
        lambda r: _num(_get(r, "judge", "raw_forward_pairs_per_s"), ".2f"))
    row("6. judge / raw forward pass", ">= 0.90", "")(
        lambda r: _num(_get(r, "judge", "ratio_to_raw"), ".2f"))
    row("6. judge / one pair at a time with generation", ">= 5x", "")(
        lambda r: _num(_get(r, "judge", "speedup_vs_generation"), ".1f"))
    row("7. web process idle (MB; the largest, with several)", "< 150", "352-374")(
        lambda r: _num(_get(r, "label", "memory_idle", "web_rss_mb"), ".0f"))
    row("7. web process under the submit load, max (MB)", "", "")(
        lambda r: _num(_get(r, "label", "memory_submit", "web_rss_max_mb"), ".0f"))
    row("7. web processes: count; all together idle / under load (MB)", "", "")(
        lambda r: (f"{_get(r, 'label', 'memory_idle', 'processes') or 1}; "
                   f"{_num(_get(r, 'label', 'memory_idle', 'web_rss_all_mb'), '.0f')} / "
                   f"{_num(_get(r, 'label', 'memory_submit', 'web_rss_all_max_mb'), '.0f')}"))
    row("7. torch or transformers in the web process", "no", "")(
        lambda r: {True: "YES", False: "no", None: "-"}[
            _get(r, "label", "memory_submit", "torch_loaded")])


def table(results: dict[str, dict]) -> str:
    kinds = list(results)
    head = ["measure", "target", "Label Studio", *kinds]
    lines = [head]
    for name, target, ls, fn in ROWS:
        cells = []
        for kind in kinds:
            try:
                cells.append(fn(results[kind]))
            except Exception:  # noqa: BLE001 (a figure that is missing prints as "-")
                cells.append("-")
        if all(c in ("-", "- / -") for c in cells):
            continue
        lines.append([name, target, ls, *cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for i, line in enumerate(lines):
        out.append(" | ".join(c.ljust(w) if j == 0 else c.rjust(w)
                              for j, (c, w) in enumerate(zip(line, widths, strict=True))))
        if i == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


# --------------------------------------------------------------------------- driver

def save(path: Path, stamp: str, args: argparse.Namespace, timings: dict,
         results: dict, speed_ms: list[float]) -> None:
    path.write_text(json.dumps({
        "timestamp": stamp, "commit": git_commit(), "cpus": os.cpu_count(),
        "reference_loop_ms": speed_ms,
        "python": platform.python_version(), "platform": platform.platform(),
        "args": dict(vars(args)), "seconds": timings, "results": results,
    }, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--workloads", default="1,2,3,4,5,6,7")
    ap.add_argument("--items", type=int, default=10_000, help="import in one request")
    ap.add_argument("--large", type=int, default=1_000_000, help="import in batches (0: skip)")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--next-calls", type=int, default=200)
    ap.add_argument("--labels", type=int, default=2_000)
    ap.add_argument("--list-sizes", default="10000,1000000")
    ap.add_argument("--list-calls", type=int, default=200)
    ap.add_argument("--export-sizes", default="10000,1000000")
    ap.add_argument("--pairs", type=int, default=16, help="judge workload")
    ap.add_argument("--web-workers", default=DEFAULT_WEB_WORKERS,
                    help="uvicorn worker processes: N, or per backend as in the default")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10k instead of 1M, fewer calls and pairs")
    args = ap.parse_args(argv)
    if args.quick:
        args.large, args.list_sizes, args.export_sizes = 20_000, "10000", "10000"
        args.list_calls, args.pairs, args.next_calls, args.labels = 30, 4, 50, 500
    args.list_sizes = [int(x) for x in str(args.list_sizes).split(",") if x]
    args.export_sizes = [int(x) for x in str(args.export_sizes).split(",") if x]
    workloads = {int(x) for x in args.workloads.split(",")}
    kinds = [k for k in args.backends.split(",") if k]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logdir = RESULTS / f"suite-{stamp}-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    build_rows(args)

    t0 = time.perf_counter()
    speed_ms = [reference_loop_ms()]  # at the start, and at the end
    results: dict[str, dict] = {k: {} for k in kinds}
    timings: dict[str, float] = {}
    phases = [("label", {1, 2, 3, 7}, lambda k: label_workloads(k, args, logdir)),
              ("list", {4}, lambda k: list_workloads(k, args)),
              ("export", {5}, lambda k: export_workloads(k, args, logdir)),
              ("judge", {6}, lambda k: judge_workload(k, args))]
    for kind in kinds:
        print(f"\n== {kind}", flush=True)
        for name, covers, run in phases:
            if not covers & workloads:
                continue
            started = time.perf_counter()
            try:
                results[kind][name] = run(kind)
            except Exception as exc:  # noqa: BLE001 (reported; the other phases go on)
                traceback.print_exc()
                results[kind][name] = {"failed": f"{type(exc).__name__}: {exc}"}
            timings[f"{kind} {name}"] = time.perf_counter() - started
            save(RESULTS / f"suite-{stamp}.json", stamp, args, timings, results, speed_ms)
            print(table(results), flush=True)  # the table so far, should a later phase hang

    speed_ms.append(reference_loop_ms())
    total = time.perf_counter() - t0
    print(f"\nTandem benchmark suite; {os.cpu_count()} CPUs; commit {git_commit()}; "
          f"web workers {args.web_workers}; reference loop {speed_ms[0]:.0f} / "
          f"{speed_ms[1]:.0f} ms (start / end; machine speed, lower is faster); "
          f"total {total / 60:.1f} min"
          + ("; QUICK (smoke) run" if args.quick else "") + "\n")
    print(table(results))
    failed = {f"{k} {n}": r["failed"] for k, res in results.items() for n, r in res.items()
              if isinstance(r, dict) and "failed" in r}
    for where, why in failed.items():
        print(f"FAILED {where}: {why}")
    path = RESULTS / f"suite-{stamp}.json"
    save(path, stamp, args, timings, results, speed_ms)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
