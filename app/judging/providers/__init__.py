"""Judge providers, built from a run's frozen configuration."""

from __future__ import annotations

from typing import Any

from app.judging.providers.base import Provider


def build_provider(config: dict[str, Any]) -> Provider:
    provider = config.get("provider", "local")
    if provider == "local":
        from app.judging.providers.local import LocalProvider

        return LocalProvider(config.get("model") or "", batch_size=config.get("batch_size", 8))
    if provider == "openai":
        from app.judging.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(
            base_url=config.get("base_url"), model=config.get("model", ""),
            api_key_env=config.get("api_key_env"), sampling=config.get("sampling") or {},
            concurrency=config.get("max_concurrency", 4),
            per_minute=config.get("requests_per_minute", 600),
            timeout_s=float((config.get("sampling") or {}).get("request_timeout_s", 60.0)))
    if provider == "reward":
        from app.judging.providers.reward import RewardModelProvider

        return RewardModelProvider(config.get("model") or "",
                                   batch_size=config.get("batch_size", 8))
    raise ValueError(f"unknown judge provider {provider!r}")
