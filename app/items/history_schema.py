"""The shape of a full-fidelity record's history (labels, AI labels with their reviews,
adjudications), checked before anything is written: a bad part is a per-line error, never
a label that breaks the project's consensus later."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Index = int  # a response's position in the record


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    created_at: datetime | None = None


class LabelRecord(_Part):
    labeler: str = Field(min_length=3, max_length=320)
    task_type: str | None = None
    rule_set_version: int | None = None
    a: Index | None = None
    b: Index | None = None
    choice: Literal["a", "b", "tie"] | None = None
    strength: Literal[1, 2] | None = None
    ranking: list[Index] | None = None
    ratings: dict[int, int] | None = None
    edited: Index | None = None
    rule_violations: dict[int, list[str]] = Field(default_factory=dict)
    rationale: str = ""
    time_spent_ms: int = Field(default=0, ge=0)


class ReviewRecord(_Part):
    reviewer: str | None = None
    action: Literal["approve", "override", "edit"] = "approve"
    ranking: list[Index]
    edited: Index | None = None
    comment: str = ""


class PairRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    a: Index
    b: Index
    p_a_first: float
    p_a_second: float


class AiLabelRecord(_Part):
    run: dict[str, Any] | None = None
    rule_set_version: int | None = None
    a: Index | None = None
    b: Index | None = None
    p_a_first: float | None = None
    p_a_second: float | None = None
    preference: float = Field(default=0.5, ge=0, le=1)
    confidence: float = Field(default=0.5, ge=0, le=1)
    consistent: bool = False
    choice: Literal["a", "b"] = "a"
    ranking: list[Index] | None = None
    pairs: list[PairRecord] = Field(default_factory=list)
    rule_verdicts: dict[int, dict[str, float]] = Field(default_factory=dict)
    rationale: str | None = None
    route: Literal["accepted", "review", "human"] = "human"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    reviews: list[ReviewRecord] = Field(default_factory=list)


class AdjudicationRecord(_Part):
    reviewer: str | None = None
    ranking: list[Index] | None = None
    comment: str = ""


class History(BaseModel):
    model_config = ConfigDict(extra="ignore")

    labels: list[LabelRecord] = Field(default_factory=list)
    ai_labels: list[AiLabelRecord] = Field(default_factory=list)
    adjudications: list[AdjudicationRecord] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _one_label_each(cls, v: list[LabelRecord]) -> list[LabelRecord]:
        people = [label.labeler.strip().lower() for label in v]
        twice = sorted({p for p in people if people.count(p) > 1})
        if twice:
            raise ValueError(f"one label per labeler and item; twice: {', '.join(twice)}")
        return v


def _indexes(history: History) -> list[tuple[str, int]]:
    """Every response index the history names, with where it is named."""
    out: list[tuple[str, int]] = []
    for n, lab in enumerate(history.labels):
        where = f"labels[{n}]"
        out += [(where, i) for i in (lab.a, lab.b, lab.edited) if i is not None]
        out += [(where, i) for i in (lab.ranking or [])]
        out += [(where, i) for i in (lab.ratings or {})]
        out += [(where, i) for i in lab.rule_violations]
    for n, ai in enumerate(history.ai_labels):
        where = f"ai_labels[{n}]"
        out += [(where, i) for i in (ai.a, ai.b) if i is not None]
        out += [(where, i) for i in (ai.ranking or [])]
        out += [(where, i) for p in ai.pairs for i in (p.a, p.b)]
        out += [(where, i) for i in ai.rule_verdicts]
        for m, rv in enumerate(ai.reviews):
            out += [(f"{where}.reviews[{m}]", i) for i in [*rv.ranking, rv.edited]
                    if i is not None]
    for n, adj in enumerate(history.adjudications):
        out += [(f"adjudications[{n}]", i) for i in (adj.ranking or [])]
    return out


def check_history(raw: dict[str, Any], responses: int) -> History:
    """The history, checked; a ValueError names the first bad part in the user's words."""
    try:
        history = History.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"wrong type in the history: {where}: {first['msg']}") from None
    for where, index in _indexes(history):
        if not 0 <= index < responses:
            raise ValueError(f"{where} names response {index}; the item has {responses} "
                             f"(0 to {responses - 1})")
    return history
