"""The training core: DPO and reward training on tiny models, in child processes.

Each training run is ``python -m worker.training.trainer --spec ...`` in a child process (torch,
transformers and TRL stay out of pytest, whose warning filter makes every warning an error);
hyperparameter checks run here, since they import no ML library.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.trl_support import PREFERENCE_PAIRS as PAIRS
from tests.trl_support import ROOT, _child_env
from worker.training.trainer import DEFAULTS, LORA_DEFAULTS, validate_hyperparameters

SNAPSHOT = {"id": 41, "version": 3, "sha256": "5f2c" * 16}
FAST = {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
        "max_length": 128, "warmup_ratio": 0.0}


def _standard_jsonl(path: Path, pairs: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                            for p, c, r in pairs), encoding="utf-8")
    return path


def _conversational_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for index, (prompt, chosen, rejected) in enumerate(PAIRS):
        conversation = [{"role": "user", "content": prompt}]
        if index % 2:
            conversation.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        rows.append({"prompt": conversation,
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}],
                     "margin": 0.5 * (index % 3)})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


class Run(NamedTuple):
    code: int
    events: list[dict[str, Any]]  # the JSON lines on stdout
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        assert self.code == 0, self.stderr[-4000:]
        assert self.events[-1]["event"] == "result"
        return self.events[-1]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "metrics" and "loss" in e]

    @property
    def verified(self) -> dict[str, Any]:
        return next(e for e in self.events if e["event"] == "verified")


def _train(tmp_path: Path, *, method: str, model: Path, train_file: Path,
           hyperparameters: dict[str, Any], eval_file: Path | None = None,
           extra: tuple[str, ...] = ("--verify",)) -> Run:
    """Run the trainer's command line in a child process, as a GPU machine would."""
    spec = {"method": method, "base_model": str(model), "train_file": str(train_file),
            "eval_file": str(eval_file) if eval_file else None,
            "output_dir": str(tmp_path / "checkpoint"), "hyperparameters": hyperparameters,
            "card": {"project_id": 7, "run_id": 12, "snapshot": SNAPSHOT}}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "worker.training.trainer", "--spec", str(spec_file), *extra],
        cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=180)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return Run(done.returncode, events, done.stderr)


def _safetensors(path: Path) -> tuple[dict[str, Any], bytes]:
    """The header and the raw data of a .safetensors file, read without torch."""
    blob = path.read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _tensor_bytes(path: Path, name: str) -> bytes:
    header, data = _safetensors(path)
    start, end = header[name]["data_offsets"]
    return data[start:end]


def _finite(value: Any) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


def test_dpo_on_standard_jsonl_reports_progress_and_saves_a_loadable_checkpoint(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    train_file = _standard_jsonl(tmp_path / "train.jsonl", PAIRS)
    eval_file = _standard_jsonl(tmp_path / "test.jsonl", PAIRS[:4])
    run = _train(tmp_path, method="dpo", model=tiny_models["causal-lm"],
                 train_file=train_file, eval_file=eval_file, hyperparameters=FAST)
    result = run.result

    assert [m["step"] for m in run.metrics] == [1, 2]
    for point in run.metrics:
        assert point["max_steps"] == 2 and point["epoch"] > 0
        for key in ("loss", "learning_rate", "rewards/accuracies", "rewards/margins"):
            assert _finite(point[key]), key
        assert point["tokens_per_second"] > 0
        assert point["eta_seconds"] >= 0
    assert run.metrics[0]["eta_seconds"] > 0  # one of two steps left
    assert any("eval_loss" in e for e in run.events if e["event"] == "metrics")

    checkpoint = tmp_path / "checkpoint"
    assert result["checkpoint_dir"] == str(checkpoint) and result["steps"] == 2
    metrics = result["metrics"]
    for key in ("train_loss", "train_runtime", "train_samples_per_second",
                "train_tokens_per_second", "eval_loss", "eval_rewards/accuracies"):
        assert _finite(metrics[key]), key
    assert run.verified["class"] == "LlamaForCausalLM"
    card = (checkpoint / "README.md").read_text(encoding="utf-8")
    assert SNAPSHOT["sha256"] in card and "| snapshot.id | 41 |" in card
    assert "| snapshot.version | 3 |" in card and "DPO" in card
    args = json.loads((checkpoint / "training_args.json").read_text(encoding="utf-8"))
    assert args["method"] == "dpo" and args["hyperparameters"]["max_steps"] == 2
    assert not (tmp_path / "checkpoint.tmp").exists()


def test_reward_model_on_conversational_parquet_with_margin_loads_as_a_classifier(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    train_file = _conversational_parquet(tmp_path / "train.parquet")
    run = _train(tmp_path, method="reward", model=tiny_models["causal-lm"],
                 train_file=train_file, hyperparameters=FAST)
    result = run.result

    assert [m["step"] for m in run.metrics] == [1, 2]
    for point in run.metrics:
        assert _finite(point["accuracy"]) and _finite(point["margin"])
        assert point["tokens_per_second"] > 0
    assert _finite(result["metrics"]["train_accuracy"])
    verified = run.verified  # a causal base became a one-score sequence classifier
    assert verified["class"] == "LlamaForSequenceClassification"
    assert verified["num_labels"] == 1 and verified["pad_token_id"] is not None
    assert "reward model" in (tmp_path / "checkpoint" / "README.md").read_text("utf-8")


def test_lora_dpo_saves_a_merged_full_model(tiny_models: dict[str, Path],
                                             tmp_path: Path) -> None:
    train_file = _standard_jsonl(tmp_path / "train.jsonl", PAIRS)
    run = _train(tmp_path, method="dpo", model=tiny_models["causal-lm"],
                 train_file=train_file, hyperparameters={**FAST, "lora": {"r": 4}})
    assert run.result["steps"] == 2

    checkpoint = tmp_path / "checkpoint"
    assert not (checkpoint / "adapter_config.json").exists()
    header, _ = _safetensors(checkpoint / "model.safetensors")
    assert not [name for name in header if "lora" in name or "base_layer" in name]
    weight = "model.layers.0.self_attn.q_proj.weight"
    base = tiny_models["causal-lm"] / "model.safetensors"
    assert _tensor_bytes(checkpoint / "model.safetensors", weight) != _tensor_bytes(base, weight)
    assert run.verified["class"] == "LlamaForCausalLM"
    assert "merged into full weights" in (checkpoint / "README.md").read_text("utf-8")


def test_stop_after_the_first_step_cancels_and_leaves_no_checkpoint(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    train_file = _standard_jsonl(tmp_path / "train.jsonl", PAIRS)
    run = _train(tmp_path, method="dpo", model=tiny_models["causal-lm"],
                 train_file=train_file, hyperparameters={**FAST, "max_steps": 4},
                 extra=("--stop-after-steps", "1"))

    assert run.code == 3, run.stderr[-4000:]
    assert run.events[-1] == {"event": "cancelled"}
    assert 1 <= max(m["step"] for m in run.metrics) < 4
    assert not (tmp_path / "checkpoint").exists()
    assert not (tmp_path / "checkpoint.tmp").exists()


def test_bad_hyperparameters_fail_before_any_model_loads(tiny_models: dict[str, Path],
                                                         tmp_path: Path) -> None:
    train_file = _standard_jsonl(tmp_path / "train.jsonl", PAIRS)
    run = _train(tmp_path, method="dpo", model=tiny_models["causal-lm"],
                 train_file=train_file, hyperparameters={"learning_rat": 1e-5})
    assert run.code == 2
    assert "'learning_rat'" in run.events[-1]["error"]


@pytest.mark.parametrize(("method", "hp", "named"), [
    ("dpo", {"learning_rat": 1e-5}, "'learning_rat'"),
    ("dpo", {"learning_rate": -1e-5}, "'learning_rate'"),
    ("reward", {"beta": 0.1}, "'beta'"),  # a DPO knob
    ("dpo", {"max_steps": 0}, "'max_steps'"),
    ("dpo", {"per_device_train_batch_size": 2.5}, "'per_device_train_batch_size'"),
    ("dpo", {"per_device_train_batch_size": True}, "'per_device_train_batch_size'"),
    ("dpo", {"learning_rate": float("nan")}, "'learning_rate'"),
    ("dpo", {"warmup_ratio": 1.0}, "'warmup_ratio'"),
    ("dpo", {"lora": {"rank": 8}}, "'lora.rank'"),
    ("reward", {"lora": {"r": 0}}, "'lora.r'"),
    ("dpo", {"lora": {"target_modules": []}}, "'lora.target_modules'"),
    ("dpo", {"bf16": "yes"}, "'bf16'"),
])
def test_bad_hyperparameters_are_rejected_by_name(method: str, hp: dict[str, Any],
                                                   named: str) -> None:
    with pytest.raises(ValueError, match=named):
        validate_hyperparameters(method, hp)


def test_hyperparameters_merge_over_the_documented_defaults() -> None:
    dpo = validate_hyperparameters("dpo", {"max_steps": 10, "lora": True})
    assert dpo["learning_rate"] == DEFAULTS["dpo"]["learning_rate"] == 5e-6
    assert dpo["beta"] == 0.1 and dpo["max_steps"] == 10 and dpo["lora"] == LORA_DEFAULTS
    reward = validate_hyperparameters("reward", {"lora": {"r": 8}})
    assert reward["learning_rate"] == 1e-5 and "beta" not in reward
    assert reward["lora"] == {**LORA_DEFAULTS, "r": 8}
    assert validate_hyperparameters("reward", {})["lora"] is None
    # The server stores the merged dict and the worker checks it again: same answer.
    assert validate_hyperparameters("reward", reward) == reward
    with pytest.raises(ValueError, match="method"):
        validate_hyperparameters("ppo", {})


def test_validating_hyperparameters_imports_no_ml_library() -> None:
    code = ("import sys; from worker.training.trainer import validate_hyperparameters as v; "
            "v('dpo', {'learning_rate': 1e-4}); "
            "print(sorted({'torch', 'transformers', 'trl', 'datasets'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_child_env(),
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
