"""What a generation run takes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.judging.schemas import ENV_NAME


class SamplingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    seed: int | None = Field(default=None, ge=0)


class GenerationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=2, ge=2, le=8)  # an item needs two or more responses
    provider: Literal["local", "openai"] = "local"
    # local: smollm2, a folder, a hub name or checkpoint:N; openai: the model name
    model: str = Field(default="smollm2", max_length=1000)
    base_url: str | None = Field(default=None, max_length=500)
    api_key_env: str | None = Field(default=None, max_length=100)
    source_round: int | None = Field(default=None, ge=1)  # prompts of this round (None: all)
    sampling: SamplingIn = Field(default_factory=SamplingIn)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        v = (v or "").strip() or None
        if v is not None and (not ENV_NAME.match(v) or v.upper().startswith("TANDEM_")):
            raise ValueError("the name of an environment variable (not one of Tandem's own)")
        return v
