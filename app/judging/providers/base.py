"""What every judge provider does: answer questions with the odds of the first choice."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.judging.prompts import Question


@dataclass
class Answer:
    """P(first choice) for one question, or the reason there is none."""

    p_first: float | None = None
    rationale: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    error: str | None = None
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_cache(self) -> dict[str, Any]:
        return {"p_first": self.p_first, "rationale": self.rationale,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_cache(cls, value: dict[str, Any]) -> Answer:
        return cls(p_first=value["p_first"], rationale=value.get("rationale"),
                   prompt_tokens=value.get("prompt_tokens", 0),
                   completion_tokens=value.get("completion_tokens", 0), cached=True)


class TransientError(Exception):
    """The endpoint failed in a way worth retrying (429, 5xx, timeout, empty answer)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Provider(Protocol):
    name: str

    def identity(self) -> str:
        """What the cache key must include about this provider (model and options)."""
        ...

    def answer(self, questions: list[Question]) -> list[Answer]:
        """Answer every question; a question that cannot be answered gets ``error`` set.

        Raises TransientError when the whole batch should be retried later."""
        ...


def cache_key(provider: Provider, question: Question) -> str:
    blob = json.dumps([provider.identity(), question.messages, list(question.choices)],
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
