"""The TRL harness itself: tiny models build offline, and one DPO or reward step runs on
hand-written files in TRL's standard and conversational formats, as JSON lines or Parquet."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.trl_support import PREFERENCE_PAIRS as QUESTIONS
from tests.trl_support import build_tiny_models, run_trl_step


def _standard_rows(*, margin: bool) -> list[dict[str, Any]]:
    rows = []
    for index, (prompt, chosen, rejected) in enumerate(QUESTIONS):
        row: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if margin:
            row["margin"] = 0.25 * (index % 4)
        rows.append(row)
    return rows


def _conversational_rows() -> list[dict[str, Any]]:
    def assistant(text: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text}]

    rows = []
    for index, (prompt, chosen, rejected) in enumerate(QUESTIONS):
        conversation = [{"role": "user", "content": prompt}]
        if index % 2:  # the conversation so far: a system message and an earlier turn
            conversation = [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hello!"},
                {"role": "assistant", "content": "Hello, how can I help?"},
                *conversation,
            ]
        rows.append({"prompt": conversation, "chosen": assistant(chosen),
                     "rejected": assistant(rejected)})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _assert_one_step(result: dict[str, Any], *, trainer: str, conversational: bool) -> None:
    assert result["trainer"] == trainer
    assert result["rows"] == len(QUESTIONS)
    assert result["train_rows"] == len(QUESTIONS)  # nothing dropped for length
    assert result["conversational"] is conversational
    assert result["steps"] == 1
    assert isinstance(result["loss"], float) and math.isfinite(result["loss"])


def test_dpo_trains_one_step_on_standard_jsonl(tiny_models: dict[str, Path], tmp_path: Path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", _standard_rows(margin=False))
    result = run_trl_step("dpo", tiny_models["causal-lm"], data, tmp_path / "out")
    _assert_one_step(result, trainer="dpo", conversational=False)
    # The policy starts as its own reference: the first DPO loss is log 2.
    assert result["loss"] == pytest.approx(math.log(2), abs=1e-3)


def test_dpo_trains_one_step_on_conversational_jsonl(tiny_models: dict[str, Path],
                                                     tmp_path: Path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", _conversational_rows())
    result = run_trl_step("dpo", tiny_models["causal-lm"], data, tmp_path / "out")
    _assert_one_step(result, trainer="dpo", conversational=True)


def test_dpo_trains_one_step_on_conversational_parquet(tiny_models: dict[str, Path],
                                                       tmp_path: Path):
    data = _write_parquet(tmp_path / "pairs.parquet", _conversational_rows())
    result = run_trl_step("dpo", tiny_models["causal-lm"], data, tmp_path / "out")
    _assert_one_step(result, trainer="dpo", conversational=True)


def test_reward_trains_one_step_on_standard_jsonl_with_margin(tiny_models: dict[str, Path],
                                                              tmp_path: Path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", _standard_rows(margin=True))
    result = run_trl_step("reward", tiny_models["reward-model"], data, tmp_path / "out")
    _assert_one_step(result, trainer="reward", conversational=False)
    assert "margin" in result["columns"]


def test_reward_trains_one_step_on_conversational_jsonl(tiny_models: dict[str, Path],
                                                        tmp_path: Path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", _conversational_rows())
    result = run_trl_step("reward", tiny_models["reward-model"], data, tmp_path / "out")
    _assert_one_step(result, trainer="reward", conversational=True)


def test_failed_step_reports_the_child_error(tiny_models: dict[str, Path], tmp_path: Path):
    with pytest.raises(AssertionError, match="does not exist"):
        run_trl_step("dpo", tiny_models["causal-lm"], tmp_path / "missing.jsonl", tmp_path)


def test_building_again_reuses_the_models(tiny_models: dict[str, Path]):
    model_file = tiny_models["causal-lm"] / "model.safetensors"
    before = model_file.stat().st_mtime_ns
    again = build_tiny_models(tiny_models["causal-lm"].parent)
    assert again == tiny_models
    assert model_file.stat().st_mtime_ns == before
