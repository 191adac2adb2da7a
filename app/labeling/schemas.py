"""The label a labeler submits, for every task type."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database: a larger one names no row


class LabelIn(BaseModel):
    item_id: int = Field(ge=1, le=MAX_ID)
    # printable ASCII: a client-made id (uuid hex in our pages), used as a lookup key
    idempotency_key: str = Field(min_length=8, max_length=64, pattern=r"^[!-~]+$")
    choice: Literal["a", "b", "tie"] | None = None
    strength: Literal[1, 2] | None = None  # 1 slightly, 2 clearly better
    ranking: list[int] | None = None  # response ids, best first
    ratings: dict[int, int] | None = None  # response id -> 1..7
    edit_response_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    edit_text: str | None = Field(default=None, max_length=100_000)
    rule_violations: dict[int, list[str]] = Field(default_factory=dict)
    rationale: str = Field(default="", max_length=10_000)
    time_spent_ms: int | None = Field(default=None, ge=0)

    @field_validator("rationale", "edit_text", mode="before")
    @classmethod
    def _drop_nul(cls, v: object) -> object:
        # A pasted NUL is invisible, and PostgreSQL cannot store it in a text column.
        return v.replace("\x00", "") if isinstance(v, str) else v


def scale_to_choice(value: str) -> tuple[str, int | None]:
    """The 5-point scale of the pairwise page: 1 = A clearly ... 5 = B clearly."""
    return {
        "1": ("a", 2),
        "2": ("a", 1),
        "3": ("tie", None),
        "4": ("b", 1),
        "5": ("b", 2),
    }[value]
