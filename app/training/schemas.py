"""What starting a training run takes, and what a training worker reports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainingRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot_id: int
    method: Literal["dpo", "reward"] = "dpo"
    # a transformers folder, a hub name, a registered checkpoint ("checkpoint:7"), or the
    # default SmolLM2-135M-Instruct ("smollm2")
    base_model: str = Field(default="smollm2", max_length=500)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class ClaimIn(BaseModel):
    worker: str = Field(max_length=200)
    attempt: int


class MetricsIn(BaseModel):
    """A batch of logging steps and log lines from the worker; also a heartbeat."""

    attempt: int
    points: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    log: list[str] = Field(default_factory=list, max_length=1000)


class CheckpointIn(BaseModel):
    uri: str = Field(max_length=1000)
    metrics: dict[str, Any] = Field(default_factory=dict)


class FinishIn(BaseModel):
    attempt: int
    status: Literal["succeeded", "failed", "cancelled"]
    error: str | None = Field(default=None, max_length=20_000)
    checkpoint: CheckpointIn | None = None
