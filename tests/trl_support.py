"""Run the tiny-model builders and one TRL step in child processes, from tests.

Children keep torch, transformers and TRL (and their warnings) out of the pytest process,
whose warning filter turns every warning into an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# A few hand-written preference pairs (prompt, chosen, rejected) for one-step TRL tests.
PREFERENCE_PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France.", "Bread."),
    ("Why is the sky blue?", "Air scatters blue light more than red light.", "It is not."),
    ("Write a short poem about the sea.", "Grey waves fold,\nthe sea is old.", "No."),
    ("What is 12 plus 345?", "12 plus 345 is 357.", "It is 12345."),
    ("Reply politely to an angry email.", "I am sorry for the trouble; I will fix it.", "Go away."),
    ("Explain the rules of chess.", "Each side moves in turn; checkmate wins.", "Chess is hard."),
    ("Summarise: the model reads the prompt.", "The model reads the prompt.", "Cats sleep."),
    ("Is it right? Say yes or no.", "Yes, it is right.", "Maybe, who knows, whatever."),
]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="2",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _run(args: list[str], timeout: int) -> str:
    """Run ``python -m <args>`` from the repository root; return its stdout or fail the test."""
    command = [sys.executable, "-m", *args]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise AssertionError(f"{' '.join(command)} ran past {timeout}s\n{stderr[-4000:]}") from exc
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}\n--- stderr (tail) ---\n"
            f"{done.stderr[-4000:]}"
        )
    return done.stdout


def build_tiny_models(root: Path, timeout: int = 300) -> dict[str, Path]:
    """Build (or reuse) the tiny models under ``root`` in a child process.

    Returns ``{"causal-lm": path, "reward-model": path}``, as ``tests.tiny_models`` does.
    """
    stdout = _run(["tests.tiny_models", str(root)], timeout)
    return {kind: Path(path) for kind, path in json.loads(stdout.strip().splitlines()[-1]).items()}


def run_trl_step(
    trainer: str, model_dir: Path, data_file: Path, out_dir: Path, timeout: int = 300
) -> dict[str, Any]:
    """Train one step of ``trainer`` ("dpo" or "reward") on ``data_file`` in a child process.

    Returns the child's JSON summary (``rows``, ``train_rows``, ``columns``,
    ``conversational``, ``loss``, ``steps``); raises AssertionError with the child's stderr
    when it fails. The data format (json or parquet) follows the file's suffix.
    """
    data_format = "parquet" if Path(data_file).suffix == ".parquet" else "json"
    stdout = _run(
        [
            "tests.trl_step",
            "--trainer", trainer,
            "--model", str(model_dir),
            "--data", str(data_file),
            "--data-format", data_format,
            "--out", str(out_dir),
        ],
        timeout,
    )
    lines = stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"tests.trl_step printed nothing for {data_file}")
    return json.loads(lines[-1])
