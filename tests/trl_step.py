"""Run one TRL optimisation step on a preference file, on CPU, and print the result as JSON.

    python -m tests.trl_step --trainer dpo|reward --model DIR --data FILE \
        [--data-format json|parquet] --out DIR [--max-length 256]

The file is read exactly as a user would read our export:
``datasets.load_dataset("json" | "parquet", data_files=FILE, split="train")``. stdout carries
one JSON line and nothing else (trainer logs go to stderr), e.g.
``{"trainer": "dpo", "rows": 8, "train_rows": 8, "conversational": false, "loss": 0.69,
"steps": 1, ...}``. ``rows`` counts the file's rows, ``train_rows`` those left after TRL's own
preprocessing (it drops pairs longer than ``max_length``). Any failure exits non-zero with the
traceback on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

TRAINERS = ("dpo", "reward")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", choices=TRAINERS, required=True)
    parser.add_argument("--model", type=Path, required=True, help="a tiny_models folder")
    parser.add_argument("--data", type=Path, required=True, help="the exported file")
    parser.add_argument("--data-format", choices=("json", "parquet"), default=None,
                        help="default: from the file's suffix (.parquet, else json)")
    parser.add_argument("--out", type=Path, required=True, help="trainer output folder")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def _quiet_environment(out: Path, threads: int) -> None:
    """Offline, few threads, no progress bars, caches inside ``out``; before heavy imports."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # A private datasets cache: parallel runs never share (or race on) cached Arrow files.
    os.environ["HF_DATASETS_CACHE"] = str(out / "datasets-cache")


def _training_config(config_class: type, args: argparse.Namespace) -> Any:
    """The knobs that make a TRL config run one small, quiet, CPU-only step."""
    # TRL turns checkpointing on by default; transformers 5.25 renamed the flag and warns on
    # the old name, which older 5.x releases still need.
    names = {field.name for field in dataclasses.fields(config_class)}
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )
    return config_class(
        output_dir=str(args.out / "trainer"),
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        max_length=args.max_length,
        use_cpu=True,
        bf16=False,  # TRL configs default to bf16
        fp16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
        **{checkpointing: False},
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the file and the model, train one step, and describe what happened."""
    import datasets
    import torch
    import transformers
    from trl.data_utils import is_conversational

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    data_format = args.data_format or ("parquet" if args.data.suffix == ".parquet" else "json")
    dataset = datasets.load_dataset(data_format, data_files=str(args.data), split="train")
    if len(dataset) == 0:
        raise ValueError(f"{args.data} holds no rows")

    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    if args.trainer == "dpo":
        from trl import DPOConfig, DPOTrainer

        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        trainer = DPOTrainer(
            model=model,
            args=_training_config(DPOConfig, args),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    else:
        from trl import RewardConfig, RewardTrainer

        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            args.model, dtype=torch.float32
        )
        trainer = RewardTrainer(
            model=model,
            args=_training_config(RewardConfig, args),
            train_dataset=dataset,
            processing_class=tokenizer,
        )

    result = trainer.train()
    loss = float(result.training_loss)
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss is {loss}")
    return {
        "trainer": args.trainer,
        "rows": len(dataset),
        "train_rows": len(trainer.train_dataset),
        "columns": sorted(dataset.column_names),
        "conversational": is_conversational(dataset[0]),
        "loss": loss,
        "steps": int(trainer.state.global_step),
    }


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    for path in (args.model, args.data):
        if not path.exists():  # before the slow imports: fail in milliseconds, not seconds
            sys.exit(f"tests.trl_step: {path} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    _quiet_environment(args.out, args.threads)
    # Trainer's PrinterCallback prints logs to stdout; keep stdout for the one result line.
    with contextlib.redirect_stdout(sys.stderr):
        summary = run(args)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
