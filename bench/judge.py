"""Judge throughput: judged pairs per second (both orders per pair).

A real judge run (``bench_judge``, ``--backend``): a pairwise project of bench-shaped items
(a 40-word prompt, two 150-word responses), the local provider (SmolLM2-135M-Instruct), the
run started through the API and judged by a real Celery worker on the `judge` queue; pairs/s
from the POST to `succeeded`. In the same bench run, on the same prompts and batches: the
model's raw forward pass (tokenizer + forward, nothing else: the compute limit) and judging
one pair at a time by generating the answer.

Without ``--backend``: the local provider's batched scoring at several batch sizes on the demo
items, against generation one question at a time; and the OpenAI-compatible provider against
a llama.cpp server (started here on loopback with the same SmolLM2 GGUF, when
llama-cpp-python[server] is installed) or any --base-url, at several concurrency levels.

    .venv/bin/python bench/judge.py --backend both [--pairs 16]
    .venv/bin/python bench/judge.py --pairs 24
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.judging.prompts import DEFAULT_TEMPLATE, Question, render_pair  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def demo_questions(pairs: int) -> list[Question]:
    items = [json.loads(line) for line in (ROOT / "app/demo/items.jsonl").open()]
    out: list[Question] = []
    for item in (items * (pairs // len(items) + 1))[:pairs]:
        a, b = (r["text"] for r in item["responses"][:2])
        for first, second in ((a, b), (b, a)):
            out.append(render_pair(DEFAULT_TEMPLATE, rules=[], prompt=item["prompt"],
                                   response_a=first, response_b=second))
    return out


def bench_scoring(questions: list[Question], batch_size: int) -> float:
    from app.judging.providers.local import LocalProvider

    provider = LocalProvider(batch_size=batch_size)
    provider.answer(questions[:2])  # load and warm up
    started = time.perf_counter()
    provider.answer(questions)
    return (len(questions) / 2) / (time.perf_counter() - started)


def bench_generation(questions: list[Question], max_new_tokens: int = 8) -> float:
    import torch

    from app.judging.providers.local import load_model

    tokenizer, lm = load_model("")
    started = time.perf_counter()
    for q in questions:
        text = tokenizer.apply_chat_template(q.messages, tokenize=False,
                                             add_generation_prompt=True)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            lm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                        pad_token_id=tokenizer.pad_token_id)
    return (len(questions) / 2) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- a real judge run

BATCH = 8  # the judge configuration's batch size: items per worker task, questions per forward
GENERATION_PAIRS = 2  # generation is slow: measured on the first pairs only


def run_questions(items: list[dict], batch_size: int = BATCH) -> list[list[Question]]:
    """The questions the worker asks, task by task: ``batch_size`` items, both orders each."""
    out: list[list[Question]] = []
    for start in range(0, len(items), batch_size):
        chunk: list[Question] = []
        for item in items[start : start + batch_size]:
            a, b = (r["text"] for r in item["responses"][:2])
            for first, second in ((a, b), (b, a)):
                chunk.append(render_pair(DEFAULT_TEMPLATE, rules=[], prompt=item["prompt"],
                                         response_a=first, response_b=second))
        out.append(chunk)
    return out


def raw_batches(tasks: list[list[Question]], batch_size: int = BATCH) -> list[list[str]]:
    """The provider's forward batches as prompt texts: each task's questions by length."""
    from app.judging.providers.local import load_model

    tokenizer, _ = load_model("")
    out: list[list[str]] = []
    for questions in tasks:
        texts = sorted((tokenizer.apply_chat_template(q.messages, tokenize=False,
                                                      add_generation_prompt=True)
                        for q in questions),
                       key=lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]))
        out += [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    return out


def raw_forward_s(batches: list[list[str]]) -> tuple[float, float]:
    """Wall and CPU seconds for tokenizer + forward on these batches: the model's compute
    limit (only the last position's logits, which is all a judge reads)."""
    import torch

    from app.judging.providers.local import load_model

    tokenizer, lm = load_model("")
    started, cpu = time.perf_counter(), time.process_time()
    for texts in batches:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            lm(**enc, use_cache=False, logits_to_keep=1)
    return time.perf_counter() - started, time.process_time() - cpu


def _setup_project(backend, items: list[dict]) -> dict:  # noqa: ANN001
    from app.auth.service import create_api_token
    from app.judging import service as judging
    from app.judging.schemas import JudgeConfigIn
    from tests.support import make_project, make_user, write

    backend.apply()
    admin = make_user("admin@judge.example", admin=True)
    project = make_project(admin, task_type="pairwise", name="Judge bench", items=items)
    write(judging.update_config, project=project, data=JudgeConfigIn(
        provider="local", model="", template=DEFAULT_TEMPLATE, judge_rules=False,
        batch_size=BATCH))
    token = write(create_api_token, user=admin, project_id=project.id, name="judge-bench",
                  scopes=["judge", "read"]).secret
    return {"project_id": project.id, "token": token}


def _judge_run(api, project_id: int, prefix: str, timeout: float = 900) -> tuple[float, dict]:  # noqa: ANN001
    """Start a run over the items whose external id starts with ``prefix``; seconds from the
    POST to a final status, and the run as the API shows it then."""
    started = time.perf_counter()
    r = api.post(f"/api/v1/projects/{project_id}/judge-runs",
                 json={"mode": "all", "external_id_prefix": prefix})
    r.raise_for_status()
    run_id = r.json()["id"]
    deadline = started + timeout
    while True:
        body = api.get(f"/api/v1/projects/{project_id}/judge-runs/{run_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled") \
                or time.perf_counter() > deadline:
            return time.perf_counter() - started, body
        time.sleep(0.5)  # a faster poll takes CPU from the worker on 2 cores


def _run_labels(run_id: int) -> tuple[int, int, float]:
    """The run's AI labels: how many, for how many distinct items, and the seconds the
    worker spent in the model's forward passes for them (each answer carries its share of
    its batch's time)."""
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.models import AiLabel

    with session_scope() as db:
        labels, items, ms = db.execute(
            select(func.count(), func.count(func.distinct(AiLabel.item_id)),
                   func.sum(AiLabel.latency_ms)).where(AiLabel.run_id == run_id)).one()
    return labels, items, (ms or 0) / 1000


def bench_judge(kind: str, pairs: int = 16) -> dict:
    """A judge run of ``pairs`` pairwise items through the API and a real worker on a fresh
    ``kind`` backend ("sqlite": filesystem broker; "postgresql": Redis), against the raw
    forward pass on the same batches (half before the run, half after, so both see the same
    machine) and generation one pair at a time, all in this one call."""
    import httpx

    from bench.common import REDIS_URL, Server, cpu_s, create_backend, drop_backend, migrate
    from bench.load import broker_env, forget_broker_keys
    from bench.run import make_items
    from tests.support import start_worker, stop_process, wait_for

    items = make_items(pairs)
    warm = [{**make_items(1, seed=11)[0], "external_id": "warm-0"}]
    tasks = run_questions(items)
    logdir = RESULTS / f"judge-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{kind}"
    logdir.mkdir(parents=True, exist_ok=True)
    backend = create_backend(kind)
    out: dict = {"backend": kind, "pairs": pairs}
    worker = None
    try:
        migrate(backend.env)
        backend.env.update(broker_env(kind, REDIS_URL), HF_HUB_OFFLINE="1")
        worker = start_worker(backend.env, queues="judge", log=logdir / "worker.log")
        ctx = _setup_project(backend, items + warm)
        batches = raw_batches(tasks)  # loads the model here while the worker boots
        with Server(backend.env, log=logdir / "server.log") as server, httpx.Client(
                base_url=server.url, timeout=60,
                headers={"Authorization": f"Bearer {ctx['token']}"}) as api:
            wait_for(lambda: worker.poll() is not None
                     or " ready." in (logdir / "worker.log").read_text(),
                     timeout=180, what="the judge worker to be ready")
            assert worker.poll() is None, f"the judge worker exited; see {logdir}"
            # A worker loads the model on its first batch, once: a one-item run pays for it.
            out["first_run_s"], _ = _judge_run(api, ctx["project_id"], "warm-")
            half = len(batches) // 2
            before = raw_forward_s(batches[:half])
            cpu0 = {"worker": cpu_s(worker.pid), "server": cpu_s(server.pid)}
            seconds, body = _judge_run(api, ctx["project_id"], "bench-")
            for name, pid in (("worker", worker.pid), ("server", server.pid)):
                out[f"{name}_cpu_s"] = round(cpu_s(pid) - cpu0[name], 1)
            after = raw_forward_s(batches[half:])
            raw_s, out["raw_cpu_s"] = before[0] + after[0], round(before[1] + after[1], 1)
        labels, labeled_items, out["model_s"] = _run_labels(body["id"])
        gen = [q for chunk in tasks for q in chunk][: 2 * GENERATION_PAIRS]
        out["generation_pairs_per_s"] = bench_generation(gen)
    finally:
        if worker is not None:
            stop_process(worker)
        drop_backend(backend)
        forget_broker_keys(backend.env)
    done = body["counts"]["done"]
    out.update(seconds=seconds, pairs_per_s=done / seconds, raw_forward_pairs_per_s=pairs / raw_s,
               status=body["status"], counts=body["counts"],
               prompt_tokens=body["tokens"]["prompt"])
    out["ratio_to_raw"] = out["pairs_per_s"] / out["raw_forward_pairs_per_s"]
    # On shared cores the wall clock says how much CPU a process got; CPU seconds say how
    # much work it did: raw's over the worker's is the overhead alone.
    out["cpu_ratio_to_raw"] = out["raw_cpu_s"] / out["worker_cpu_s"]
    # The run's time outside the model (broker, database, polling): same process, same moment.
    out["overhead_share"] = 1 - out["model_s"] / seconds
    out["speedup_vs_generation"] = out["pairs_per_s"] / out["generation_pairs_per_s"]
    out["ok"] = (body["status"] == "succeeded" and done == pairs == body["total"]
                 and labels == labeled_items == pairs)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server() -> tuple[subprocess.Popen, str] | None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    from app.judging.providers.local import SMOLLM2_GGUF, smollm2_folder

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(smollm2_folder() / SMOLLM2_GGUF), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--logits_all", "true"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(120):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    return None


def bench_openai(questions: list[Question], base_url: str, concurrency: int) -> float:
    from app.judging.providers.openai_compat import OpenAICompatProvider

    provider = OpenAICompatProvider(base_url=base_url, model="smollm2", api_key_env=None,
                                    concurrency=concurrency, per_minute=1_000_000)
    provider.answer(questions[:1])
    started = time.perf_counter()
    answers = provider.answer(questions)
    failed = sum(a.error is not None for a in answers)
    if failed:
        print(f"   ({failed} unreadable answers)")
    return (len(questions) / 2) / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--base-url", default="", help="an OpenAI-compatible endpoint to measure")
    ap.add_argument("--no-generation", action="store_true")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"],
                    help="a real judge run through the API and a worker (bench_judge)")
    args = ap.parse_args()
    if args.backend:
        return main_run(args.backend, args.pairs)
    questions = demo_questions(args.pairs)
    rows: list[tuple[str, float]] = []
    for b in (1, 8, 16):
        rows.append((f"local, batched scoring, batch {b}", bench_scoring(questions, b)))
        print(f"{rows[-1][0]}: {rows[-1][1]:.2f} pairs/s", flush=True)
    if not args.no_generation:
        rows.append(("local, generate one at a time (8 tokens)", bench_generation(questions)))
        print(f"{rows[-1][0]}: {rows[-1][1]:.2f} pairs/s", flush=True)
    server, base_url = None, args.base_url
    if not base_url:
        started = start_llama_server()
        if started:
            server, base_url = started
    try:
        for c in (1, 2, 4, 8) if base_url else ():
            rows.append((f"openai-compatible ({'llama.cpp' if server else base_url}), "
                         f"concurrency {c}", bench_openai(questions, base_url, c)))
            print(f"{rows[-1][0]}: {rows[-1][1]:.2f} pairs/s", flush=True)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=20)
    print(f"\nJudge throughput, {args.pairs} demo pairs (both orders), {os.cpu_count()} CPUs\n")
    for name, value in rows:
        print(f"{name:<60} {value:8.2f} pairs/s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"judge-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"pairs": args.pairs, "results": dict(rows)}, indent=2))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def main_run(backend: str, pairs: int) -> int:
    from bench.common import BackendTable

    kinds = ["sqlite", "postgresql"] if backend == "both" else [backend]
    results = {}
    for kind in kinds:
        print(f"== {kind}: a judge run of {pairs} pairs", flush=True)
        results[kind] = bench_judge(kind, pairs)
        print(json.dumps(results[kind], indent=2), flush=True)
    table = BackendTable(results)
    table.add("judge run, pairs/s (POST to succeeded)", lambda r: f"{r['pairs_per_s']:.3f}")
    table.add("raw forward pass, pairs/s", lambda r: f"{r['raw_forward_pairs_per_s']:.3f}")
    table.add("run / raw forward", lambda r: f"{r['ratio_to_raw']:.2f}")
    table.add("same, CPU seconds (raw / worker's)", lambda r: f"{r['cpu_ratio_to_raw']:.2f}")
    table.add("run time outside the model's forward", lambda r: f"{r['overhead_share']:.1%}")
    table.add("generation one pair at a time, pairs/s",
              lambda r: f"{r['generation_pairs_per_s']:.3f}")
    table.add("run / generation", lambda r: f"{r['speedup_vs_generation']:.2f}")
    table.add("first run (1 item, model load) s", lambda r: f"{r['first_run_s']:.1f}")
    table.add("every item labeled once", lambda r: "yes" if r["ok"] else "NO")
    print(f"\nJudge runs, {pairs} bench pairs (both orders), {os.cpu_count()} CPUs\n")
    print(table.render())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"judge-run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"pairs": pairs, "results": results}, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
