"""Input and output shapes for projects."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.models.projects import MemberRole, TaskType

RULE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class RuleIn(BaseModel):
    id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=2000)
    severity: Literal["low", "medium", "high"] = "medium"

    @field_validator("id")
    @classmethod
    def _key(cls, v: str) -> str:
        if not RULE_KEY.match(v):
            raise ValueError("a rule id uses letters, digits, '_', '.', '-' only")
        return v


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    task_type: TaskType
    instructions_md: str = Field(default="", max_length=50_000)
    overlap_k: int = Field(default=1, ge=1, le=50)
    lease_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # consensus policy (app.consensus)
    weighting: Literal["none", "reliability"] = "none"
    conflict_threshold: float = Field(default=0.6, ge=0, le=1)
    gold_rate: float = Field(default=0.1, ge=0, le=1)
    rules: list[RuleIn] = Field(default_factory=list, max_length=100)

    @field_validator("name")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("a project needs a name")
        return v

    @field_validator("rules")
    @classmethod
    def _unique(cls, v: list[RuleIn]) -> list[RuleIn]:
        keys = [r.id for r in v]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique: {', '.join(dupes)}")
        return v


class MemberIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    role: MemberRole


RULE_LINE = re.compile(
    r"^(?P<key>[A-Za-z0-9_.-]{1,40})\s*(?:\[(?P<severity>low|medium|high)\])?\s*:\s*(?P<text>.+)$"
)


def parse_rules_text(text: str) -> list[RuleIn]:
    """One rule a line, ``id [severity]: text`` (severity low, medium or high; medium if
    left out); a line without an id gets R1, R2, ..."""
    rules: list[RuleIn] = []
    for n, line in enumerate((ln.strip() for ln in text.splitlines() if ln.strip()), start=1):
        match = RULE_LINE.match(line)
        if match:
            rules.append(RuleIn(id=match["key"], text=match["text"].strip(),
                                severity=match["severity"] or "medium"))
        else:
            rules.append(RuleIn(id=f"R{n}", text=line))
    return rules


def format_rules(rules: list) -> str:  # noqa: ANN001  (Rule rows)
    """The editable text form of a rule set (the inverse of parse_rules_text)."""
    return "\n".join(
        f"{r.key}{'' if r.severity == 'medium' else f' [{r.severity}]'}: {r.text}" for r in rules
    )
