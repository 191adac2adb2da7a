"""Judge configuration and run requests."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class JudgeConfigIn(BaseModel):
    # local: a causal LM reads the template; openai: an OpenAI-compatible endpoint;
    # reward: a reward-model checkpoint scores each response (``model``: folder or checkpoint:N)
    provider: Literal["local", "openai", "reward"] = "local"
    model: str = Field(default="", max_length=500)
    base_url: str | None = Field(default=None, max_length=500)
    api_key_env: str | None = Field(default=None, max_length=100)
    template: str = Field(min_length=1, max_length=20_000)
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    top_logprobs: int = Field(default=20, ge=1, le=20)
    request_timeout_s: float = Field(default=60.0, gt=0, le=600)
    confidence_threshold: float = Field(default=0.7, ge=0.5, le=1.0)
    review_fraction: float = Field(default=0.1, ge=0, le=1)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    batch_size: int = Field(default=8, ge=1, le=256)
    judge_rules: bool = True
    show_suggestions: bool = False

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not ENV_NAME.match(v):
            raise ValueError("give the NAME of the environment variable that holds the key "
                             "(like OPENAI_API_KEY), never the key itself")
        if v.upper().startswith("TANDEM_"):
            raise ValueError("Tandem's own settings (TANDEM_*) are never sent to an endpoint")
        return v


class RunIn(BaseModel):
    mode: Literal["all", "unlabeled"] = "all"
    external_id_prefix: str = Field(default="", max_length=200)
