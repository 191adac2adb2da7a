"""Training throughput: DPO and reward-model steps per second, pairs/s and tokens/s.

Runs worker.training.trainer.train() (the function the training worker calls) on a synthetic
preference set with the default base model (SmolLM2-135M-Instruct), full fine-tuning and
LoRA, for a few optimiser steps each. The first step (allocation, warm-up) is left out of
the steady-state figures. The same script runs unchanged on a GPU machine.

    .venv/bin/python bench/train.py [--device auto|cpu|cuda] [--pairs 64] [--steps 4]
                                    [--max-length 256] [--batch 4] [--base-model smollm2]
                                    [--methods dpo,reward] [--lora off,on]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import git_commit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

_TOPICS = ("the water cycle", "compound interest", "how vaccines work", "the rules of chess",
           "why the sky is blue", "binary search", "photosynthesis", "a polite refusal")
_WORDS = ("first", "then", "because", "for example", "the key idea", "in short", "notice",
          "which means", "step by step", "carefully", "a simple case", "the result")


def synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` standard preference rows: a question, a long helpful answer, a short poor one."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = _TOPICS[i % len(_TOPICS)]
        chosen = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
        rejected = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 40)))
        rows.append({"prompt": f"Question {i}: explain {topic} to a new colleague.",
                     "chosen": f"Sure. {topic.capitalize()}: {chosen}.",
                     "rejected": f"No idea about {topic}, {rejected}."})
    return rows


def _steady(points: list[dict[str, Any]], batch_pairs: int) -> dict[str, float | None]:
    """Throughput between the first and the last logged step (the first step excluded)."""
    points = [p for p in points if "loss" in p and p.get("num_tokens") is not None]
    if len(points) < 2:
        return {"step_s": None, "pairs_per_s": None, "tokens_per_s": None}
    first, last = points[0], points[-1]
    seconds = last["elapsed_seconds"] - first["elapsed_seconds"]
    steps = last["step"] - first["step"]
    return {"step_s": seconds / steps,
            "pairs_per_s": steps * batch_pairs / seconds,
            "tokens_per_s": (last["num_tokens"] - first["num_tokens"]) / seconds}


def bench_one(method: str, lora: bool, data: Path, args: argparse.Namespace,
              workdir: Path) -> dict[str, Any]:
    from worker.training.trainer import LORA_DEFAULTS, TrainSpec, train

    hp: dict[str, Any] = {"max_steps": args.steps, "per_device_train_batch_size": args.batch,
                          "max_length": args.max_length, "warmup_ratio": 0.0,
                          "lora": dict(LORA_DEFAULTS) if lora else None}
    points: list[dict[str, Any]] = []
    out = workdir / f"{method}-{'lora' if lora else 'full'}"
    started = time.perf_counter()
    result = train(TrainSpec(method=method, base_model=args.base_model, train_file=data,
                             output_dir=out, hyperparameters=hp),
                   on_metrics=points.append)
    wall = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    metrics = result.metrics
    row = {"method": method, "lora": lora, "steps": result.steps, "wall_s": wall,
           **_steady(points, args.batch),
           "trainer_samples_per_s": metrics.get("train_samples_per_second"),
           "trainer_tokens_per_s": metrics.get("train_tokens_per_second"),
           "train_runtime_s": metrics.get("train_runtime"),
           "final_loss": points[-1].get("loss") if points else None}
    gc.collect()
    return row


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'method':<8}{'weights':<9}{'steps':>6}{'s/step':>9}{'pairs/s':>9}"
            f"{'tokens/s':>10}{'wall s':>9}{'loss':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<8}{'lora' if r['lora'] else 'full':<9}{r['steps']:>6}"
                     f"{_fmt(r['step_s'], '.2f'):>9}{_fmt(r['pairs_per_s'], '.2f'):>9}"
                     f"{_fmt(r['tokens_per_s'], '.0f'):>10}{r['wall_s']:>9.1f}"
                     f"{_fmt(r['final_loss'], '.4f'):>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4, help="optimiser steps per configuration")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4, help="pairs per step")
    ap.add_argument("--base-model", default="smollm2")
    ap.add_argument("--methods", default="dpo,reward")
    ap.add_argument("--lora", default="off,on", help="off, on, or off,on")
    args = ap.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch loads: train() then picks CPU
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers
    import trl

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    loras = [flag.strip() == "on" for flag in args.lora.split(",") if flag.strip()]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tandem-bench-train-") as tmp:
        data = Path(tmp) / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_pairs(args.pairs)),
                        encoding="utf-8")
        for method in methods:
            for lora in loras:
                print(f"{method}, {'lora' if lora else 'full'} ...", flush=True)
                rows.append(bench_one(method, lora, data, args, Path(tmp)))
                print(f"  {json.dumps(rows[-1])}", flush=True)
    print(f"\nTraining throughput: {args.base_model}, {device}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, batch {args.batch} pairs, "
          f"max_length {args.max_length}; steady state from step 2\n")
    print(table(rows))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"train-{stamp}.json"
    path.write_text(json.dumps({
        "timestamp": stamp, "commit": git_commit(), "device": device,
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "trl": trl.__version__,
        "args": vars(args), "results": rows}, indent=2))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
