"""The model card (README.md) saved with every checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.training.trainer import TrainSpec

def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "url":  # download links are for the worker, not for readers
                yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def model_card(spec: TrainSpec, hp: dict, base: str, metrics: dict[str, Any], *,
               steps: int, precision: str) -> str:
    """The checkpoint's README.md: what was trained, on what, how, and how it ended."""
    lora = hp["lora"]
    what = ("a policy trained with DPO (causal LM)" if spec.method == "dpo"
            else "a reward model (sequence classification, one score per sequence)")
    auto = "AutoModelForCausalLM" if spec.method == "dpo" else "AutoModelForSequenceClassification"
    tags = ["trl", "tandem", "dpo" if spec.method == "dpo" else "reward-model"]
    front = ["---", "library_name: transformers", f"tags: {json.dumps(tags)}"]
    if not Path(base).is_absolute():
        front.append(f"base_model: {base}")
    named = spec.base_model or "smollm2"
    facts = [("Method", what), ("Base model", named if named == base else f"{named} ({base})"),
             ("Steps", steps),
             ("Weights", f"LoRA (r={lora['r']}, alpha={lora['alpha']}) merged into full "
                         "weights" if lora else "full fine-tune"),
             ("Precision", precision),
             ("Trained", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))]
    facts += list(_flatten(spec.card))
    lines = [*front, "---", "", f"# {spec.output_dir.name}", "",
             f"Trained by Tandem from an exported preference snapshot: {what}.", "",
             "| Fact | Value |", "| --- | --- |"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in facts]
    lines += ["", "## Hyperparameters", "", "```json", json.dumps(hp, indent=2), "```", "",
              "## Final metrics", "", "| Metric | Value |", "| --- | --- |"]
    lines += [f"| {_cell(k)} | {_cell(round(v, 6) if isinstance(v, float) else v)} |"
              for k, v in metrics.items()]
    lines += ["", "## Loading", "", "```python", f"from transformers import {auto}, AutoTokenizer",
              "", f'model = {auto}.from_pretrained("path/to/this/folder")',
              'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```", ""]
    return "\n".join(lines)
