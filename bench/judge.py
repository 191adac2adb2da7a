"""Judge throughput: judged pairs per second (both orders per pair).

Local provider: batched next-token scoring at several batch sizes, against the obvious
alternative, generating an answer one question at a time. OpenAI-compatible provider: a
llama.cpp server (started here on loopback with the same SmolLM2 GGUF, when
llama-cpp-python[server] is installed) or any --base-url, at several concurrency levels.

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
    args = ap.parse_args()
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


if __name__ == "__main__":
    sys.exit(main())
