"""Benchmark imports over the JSON API: 10,000 items in one request, then many items in batches.

    .venv/bin/python -m bench.imports [--backend sqlite|postgresql|both] [--total 1000000]
                                      [--batch 20000] [--concurrency 2] [--single 10000]

Per backend, on a fresh database: a project gets ``--single`` items in one request, and a
second project ``--total`` items in requests of ``--batch`` items (``--concurrency`` clients
at once), each ``POST /api/v1/projects/{id}/items`` with an API token, as a client would send
them. Items have the shape of ``bench.run.make_items`` (a prompt of about 40 words, two
markdown responses of about 150 words, metadata), drawn from prebuilt pools of sentences so
that a million of them cost the client seconds, not minutes; every item's text differs.
After the batches the items must be listed as ready to label (``visible``).

Prints a table and writes bench/results/imports-<timestamp>.json. ``bench_bulk_import`` is
what the issue 7 suite calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bench.common import (  # noqa: E402
    BackendTable,
    RssSampler,
    Server,
    cpu_s,
    create_backend,
    drop_backend,
    git_commit,
    migrate,
    percentile,
    postgres_backends,
)
from bench.run import WORDS, setup_project  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SINGLE_TARGET_S = 1.0
RATE_TARGET = 20_000  # items/s
POOL = 4096  # sentences, prompt halves and response paragraphs to draw from
BLOCKS = 3  # paragraphs a response: about 190 words, as make_items (150 and its overshoot)


# --------------------------------------------------------------------------- data

def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _block(rng: random.Random) -> str:
    """A paragraph of 3-5 sentences, sometimes with a list or code after it (as make_items)."""
    text = " ".join(_sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(3, 5)))
    if rng.random() < 0.3:
        text += "\n\n" + "\n".join(f"- {_sentence(rng, rng.randint(4, 9))}"
                                   for _ in range(rng.randint(2, 4)))
    elif rng.random() < 0.1:
        text += "\n\n```python\nresult = compute(value, retry=3)\nprint(result)\n```"
    return text


def _json_inner(text: str) -> bytes:
    """The text as the inside of a JSON string (quotes stripped), ready to concatenate."""
    return orjson.dumps(text)[1:-1]


class ItemSource:
    """Import bodies ``{"items": [...]}`` built from byte pools: an item is a prompt (three
    sentences, about 47 words, ending with a question mark) and two responses of BLOCKS
    paragraphs each, every part picked at random from pools of POOL, so that no two items
    share their text while an item costs the client about a microsecond to build."""

    def __init__(self, seed: int, prefix: str) -> None:
        rng = random.Random(seed)
        self.heads = [_json_inner(" ".join(_sentence(rng, rng.randint(10, 20))
                                           for _ in range(2))) for _ in range(POOL)]
        self.tails = [_json_inner(_sentence(rng, rng.randint(12, 22)).rstrip(".") + "?")
                      for _ in range(POOL)]
        blocks = [_json_inner(_block(rng)) for _ in range(POOL)]
        self.responses = [b"\\n\\n".join(rng.choice(blocks) for _ in range(BLOCKS))
                          for _ in range(POOL)]
        self.topics = [b"code", b"math", b"chat"]
        self.np = np.random.default_rng(seed)
        self.prefix = prefix.encode()

    def external_id(self, n: int) -> str:
        return f"{self.prefix.decode()}{n:07d}"

    def body(self, start: int, count: int) -> bytes:
        """Items ``start`` .. ``start + count - 1`` as one request body."""
        picks = self.np.integers(0, POOL, size=(count, 5)).tolist()
        heads, tails, responses, topics = self.heads, self.tails, self.responses, self.topics
        prefix = self.prefix
        items = [b"".join((
            b'{"external_id":"', prefix, b"%07d" % n,
            b'","prompt":"', heads[h], b" ", tails[t],
            b'","responses":[{"text":"', responses[a],
            b'","model":"model-a"},{"text":"', responses[b],
            b'","model":"model-b"}],"metadata":{"source":"bench","topic":"',
            topics[c % 3], b'"}}'))
            for n, (h, t, a, b, c) in zip(range(start, start + count), picks, strict=True)]
        # One join makes the body: each copy of tens of MB costs its page faults again.
        items[0] = b'{"items":[' + items[0]
        items[-1] += b"]}"
        return b",".join(items)


def describe(source: ItemSource, n: int = 2000) -> dict:
    """Words and bytes per item of a sample, to compare with bench.run.make_items."""
    items = orjson.loads(source.body(0, n))["items"]
    words = sum(len(i["prompt"].split()) + sum(len(r["text"].split()) for r in i["responses"])
                for i in items) / n
    return {"words_per_item": round(words, 1),
            "prompt_words": round(sum(len(i["prompt"].split()) for i in items) / n, 1),
            "bytes_per_item": round(len(orjson.dumps({"items": items})) / n)}


# --------------------------------------------------------------------------- the benchmark

def _batches(source: ItemSource, total: int, batch: int) -> Iterator[tuple[int, int, bytes]]:
    for start in range(0, total, batch):
        count = min(batch, total - start)
        yield start, count, source.body(start, count)


def bench_bulk_import(server_url: str, project_id: int, token: str, total: int, batch: int,
                      *, seed: int = 7, concurrency: int = 2, prefix: str | None = None,
                      reimport: bool = False, timeout_s: float = 600) -> dict:
    """Import ``total`` items in requests of ``batch`` through the JSON API, ``concurrency``
    clients at once, and check that all of them are ready for labelers afterwards.

    The server must import a batch synchronously (TANDEM_IMPORT_SYNC_LIMIT >= batch). A
    thread builds the next bodies while the requests run, so the figure is what a client
    that has its data at hand gets. Two requests at once (the default) keep PostgreSQL busy
    with one batch while the web process parses the next: 1.6x the items/s of one at a
    time; on SQLite they queue on the write lock, for the same items/s. ``seconds`` runs
    from the first request to the last answer. The same seed and prefix give the same
    items: with ``reimport`` they are expected to be there already, and every batch must
    report them all unchanged.
    """
    prefix = prefix if prefix is not None else f"imp{seed}-"
    source = ItemSource(seed, prefix)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{server_url}/api/v1/projects/{project_id}/items"
    bodies: queue.Queue = queue.Queue(maxsize=concurrency + 1)
    results: list[dict] = []
    lock = threading.Lock()

    def produce() -> None:
        for job in _batches(source, total, batch):
            bodies.put(job)
        for _ in range(concurrency):
            bodies.put(None)

    def send() -> None:
        with httpx.Client(headers=headers, timeout=timeout_s) as client:
            while (job := bodies.get()) is not None:
                start, count, body = job
                t0 = time.perf_counter()
                try:
                    r = client.post(url, content=body)
                    report = r.json() if r.headers.get("content-type", "").startswith(
                        "application/json") else {}
                    status, text = r.status_code, r.text[:300]
                except httpx.HTTPError as exc:
                    report, status, text = {}, 0, f"{type(exc).__name__}: {exc}"
                row = {"start": start, "count": count, "bytes": len(body), "status": status,
                       "created": report.get("created"), "seconds": time.perf_counter() - t0}
                expected = ("unchanged", count) if reimport else ("created", count)
                if status != 200 or report.get(expected[0]) != expected[1]:
                    row["error"] = text
                    print(f"  batch at {start}: HTTP {status} {text}", file=sys.stderr)
                with lock:
                    results.append(row)

    cpu0 = time.process_time()
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    while bodies.qsize() < min(concurrency, -(-total // batch)) and producer.is_alive():
        time.sleep(0.01)  # the first bodies are ready before the clock starts
    t0 = time.perf_counter()
    senders = [threading.Thread(target=send) for _ in range(concurrency)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    seconds = time.perf_counter() - t0
    producer.join()
    client_cpu_s = time.process_time() - cpu0

    created = sum(r["created"] or 0 for r in results)
    ok = len(results) == -(-total // batch) and all("error" not in r for r in results)
    visible = ok and _visible(server_url, project_id, token,
                              [source.external_id(0), source.external_id(total - 1)])
    lat = [r["seconds"] for r in results]
    return {"items": total, "batch": batch, "concurrency": concurrency, "seconds": seconds,
            "items_per_s": total / seconds, "batches": len(results),
            "batch_p50_s": percentile(lat, 50), "batch_max_s": max(lat) if lat else None,
            "mb_sent": sum(r["bytes"] for r in results) / 1e6, "created": created,
            "client_cpu_s": client_cpu_s, "ok": ok,
            "visible": visible, "errors": [r for r in results if "error" in r][:5]}


def _visible(server_url: str, project_id: int, token: str, external_ids: list[str]) -> bool:
    """The first and the last item imported are listed as ready and waiting for labels."""
    headers = {"Authorization": f"Bearer {token}"}
    for ext in external_ids:
        r = httpx.get(f"{server_url}/api/v1/projects/{project_id}/items", headers=headers,
                      params={"prefix": ext, "status": "todo", "limit": 5}, timeout=60)
        if r.status_code != 200 or [i.get("external_id") for i in r.json()["items"]] != [ext]:
            print(f"  visible: {ext} not listed as todo: HTTP {r.status_code} {r.text[:200]}",
                  file=sys.stderr)
            return False
    return True


# --------------------------------------------------------------------------- CPU accounting

class CpuMeter:
    """CPU seconds the web process and the database's backends spent in a block: a figure
    that does not move when other work on a shared machine slows the wall clock."""

    def __init__(self, server_pid: int, pg_name: str | None) -> None:
        self.server_pid, self.pg_name = server_pid, pg_name

    def __enter__(self) -> CpuMeter:
        self.server0 = cpu_s(self.server_pid, 0.0)
        self.pg0 = {p: cpu_s(p, 0.0) for p in postgres_backends(self.pg_name)}
        return self

    def __exit__(self, *exc: object) -> None:
        self.server_s = cpu_s(self.server_pid, 0.0) - self.server0
        self.pg_s = sum(cpu_s(p, 0.0) - self.pg0.get(p, 0.0)
                        for p in postgres_backends(self.pg_name))


# --------------------------------------------------------------------------- driver

def run_backend(kind: str, args: argparse.Namespace, stamp: str) -> dict:
    print(f"\n== {kind}: fresh database", flush=True)
    out: dict = {}
    backend = create_backend(kind)
    log = RESULTS / f"imports-{stamp}-logs" / f"{kind}-server.log"
    try:
        migrate(backend.env)
        single = setup_project(backend, 1)
        bulk = setup_project_named(backend, "Bulk import")
        env = dict(backend.env, TANDEM_IMPORT_SYNC_LIMIT=str(max(args.batch, args.single)))
        with Server(env, log=log) as server:
            if args.single:
                print(f"   {args.single} items in one request...", flush=True)
                with CpuMeter(server.pid, backend.pg_name) as cpu:
                    out["single"] = bench_bulk_import(
                        server.url, single["project_id"], single["token"], args.single,
                        args.single, seed=args.seed + 1)
                out["single"].update(server_cpu_s=cpu.server_s, pg_cpu_s=cpu.pg_s)
                print(f"   -> {out['single']['seconds']:.2f} s", flush=True)
                again = bench_bulk_import(server.url, single["project_id"], single["token"],
                                          args.single, args.single, seed=args.seed + 1,
                                          reimport=True)
                out["single_again_s"] = again["seconds"] if again["ok"] else None
            if args.total:
                print(f"   {args.total} items, {args.batch} a request, {args.concurrency} "
                      "at once...", flush=True)
                with CpuMeter(server.pid, backend.pg_name) as cpu, \
                        RssSampler(server.pid, interval=0.1) as rss:
                    out["bulk"] = bench_bulk_import(
                        server.url, bulk["project_id"], bulk["token"], args.total, args.batch,
                        seed=args.seed, concurrency=args.concurrency)
                out["bulk"].update(server_cpu_s=cpu.server_s, pg_cpu_s=cpu.pg_s,
                                   server_peak_rss_mb=rss.max_kb / 1024)
                b = out["bulk"]
                print(f"   -> {b['seconds']:.1f} s, {b['items_per_s']:.0f} items/s, "
                      f"visible {b['visible']}", flush=True)
    except Exception as exc:  # noqa: BLE001 (report it and go on with the next backend)
        import traceback

        traceback.print_exc()
        out["failed"] = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep:
            print(f"   kept {backend.database_url} ({backend.data_dir})")
        else:
            drop_backend(backend)
    return out


def setup_project_named(backend, name: str) -> dict:  # noqa: ANN001
    """A second project (and token) on the same database, for the batched import."""
    from app.auth.service import create_api_token
    from tests.support import make_project, make_user, write

    backend.apply()
    admin = make_user(f"bulk-admin-{random.randrange(10**9)}@bench.example", admin=True)
    project = make_project(admin, task_type="pairwise", k=1, name=name)
    issued = write(create_api_token, user=admin, project_id=project.id, name="bench",
                   scopes=["import", "read"])
    return {"project_id": project.id, "token": issued.secret}


def _f(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    t = BackendTable(results)
    add = t.add
    s, b = "single", "bulk"
    add(f"{args.single} in one request: s (target < {SINGLE_TARGET_S:g})",
        lambda r: _f(r[s]["seconds"]))
    add("  items/s", lambda r: _f(r[s]["items_per_s"], ".0f"))
    add("  CPU s: client / web process / PostgreSQL",
        lambda r: f"{_f(r[s]['client_cpu_s'])} / {_f(r[s]['server_cpu_s'])} / "
                  f"{_f(r[s]['pg_cpu_s'])}")
    add("  same items again (all unchanged): s", lambda r: _f(r["single_again_s"]))
    add("  ok / visible", lambda r: f"{r[s]['ok']} / {r[s]['visible']}")
    add(f"{args.total} in batches of {args.batch} x{args.concurrency}: s",
        lambda r: _f(r[b]["seconds"], ".1f"))
    add(f"  items/s (target > {RATE_TARGET:,})", lambda r: _f(r[b]["items_per_s"], ".0f"))
    add("  batch p50 / max s", lambda r: f"{_f(r[b]['batch_p50_s'])} / {_f(r[b]['batch_max_s'])}")
    add("  CPU s: client / web process / PostgreSQL",
        lambda r: f"{_f(r[b]['client_cpu_s'], '.1f')} / {_f(r[b]['server_cpu_s'], '.1f')} / "
                  f"{_f(r[b]['pg_cpu_s'], '.1f')}")
    add("  CPU us an item: all processes",
        lambda r: _f(1e6 * (r[b]["client_cpu_s"] + r[b]["server_cpu_s"] + r[b]["pg_cpu_s"])
                     / r[b]["items"], ".0f"))
    add("  MB sent / web process peak RSS MB",
        lambda r: f"{_f(r[b]['mb_sent'], '.0f')} / {_f(r[b]['server_peak_rss_mb'], '.0f')}")
    add("  ok / visible", lambda r: f"{r[b]['ok']} / {r[b]['visible']}")
    return t.render()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--total", type=int, default=1_000_000, help="items imported in batches")
    ap.add_argument("--batch", type=int, default=20_000, help="items a request")
    ap.add_argument("--concurrency", type=int, default=2, help="requests at once")
    ap.add_argument("--single", type=int, default=10_000,
                    help="items imported in one request first (0: skip)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = ap.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    t0 = time.perf_counter()
    shape = describe(ItemSource(args.seed, "x"))
    print(f"items: {shape['words_per_item']} words ({shape['prompt_words']} in the prompt), "
          f"{shape['bytes_per_item']} bytes of JSON each", flush=True)

    results = {kind: run_backend(kind, args, stamp) for kind in kinds}

    print(f"\nTandem import benchmark; {os.cpu_count()} CPUs; commit {git_commit()}; "
          f"total {time.perf_counter() - t0:.0f} s\n")
    print(table(results, args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"imports-{stamp}.json"
    path.write_text(json.dumps({
        "timestamp": stamp, "commit": git_commit(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "config": {**vars(args), "item_shape": shape},
        "targets": {"single_s": SINGLE_TARGET_S, "items_per_s": RATE_TARGET},
        "results": results, "total_seconds": time.perf_counter() - t0,
    }, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    ok = all("failed" not in r and all(r[k]["ok"] and r[k]["visible"]
                                       for k in ("single", "bulk") if k in r)
             for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
