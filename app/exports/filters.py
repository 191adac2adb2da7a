"""What goes into an export: label sources, agreement, judge confidence, rule-set version,
date range and tag."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models.consensus import ConsensusSource


class LabelSource(StrEnum):
    """Where an exported preference came from (the consensus sources)."""

    HUMAN = ConsensusSource.HUMAN.value
    AI_ACCEPTED = ConsensusSource.AI_ACCEPTED.value
    AI_REVIEWED = ConsensusSource.AI_REVIEWED.value
    ADJUDICATED = ConsensusSource.ADJUDICATED.value
    GOLD = ConsensusSource.GOLD.value


ALL_SOURCES = frozenset(LabelSource)


def parse_sources(value: str | None) -> frozenset[LabelSource]:
    """``all`` or a comma list of sources; an unknown name is a clear error."""
    if not value or value == "all":
        return ALL_SOURCES
    try:
        return frozenset(LabelSource(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"source must be 'all' or some of {', '.join(ALL_SOURCES)}") from None


class ExportFilters(BaseModel):
    """Which decided items an export takes. Unset means no restriction.

    ``min_agreement`` applies to preferences aggregated from human labels (an item with a
    single human label has no agreement and is left out by it); ``min_confidence`` applies
    to AI labels nobody reviewed. Reviewer decisions and gold answers pass both.
    """

    model_config = ConfigDict(extra="forbid")

    sources: list[LabelSource] = Field(default_factory=lambda: sorted(ALL_SOURCES))
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    rule_set_version: int | None = Field(default=None, ge=1)
    since: datetime | None = None
    until: datetime | None = None
    tag: str | None = Field(default=None, max_length=100)
    round: int | None = Field(default=None, ge=1)  # a labeling round (1: what was imported)

    @field_validator("sources")
    @classmethod
    def _some(cls, v: list[LabelSource]) -> list[LabelSource]:
        if not v:
            raise ValueError("choose at least one label source")
        return sorted(set(v))

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        return (v or "").strip() or None

    def described(self) -> dict[str, Any]:
        """The filters as stored in a manifest: JSON values, unset ones left out."""
        return self.model_dump(mode="json", exclude_none=True)


def item_tags(meta: dict[str, Any] | None) -> set[str]:
    """An item's tags: its metadata's ``tags`` (a list or a comma string) and ``tag``."""
    meta = meta or {}
    tags: set[str] = set()
    for key in ("tags", "tag"):
        value = meta.get(key)
        if isinstance(value, str):
            tags.update(t.strip() for t in value.split(",") if t.strip())
        elif isinstance(value, list):
            tags.update(str(t) for t in value)
    return tags
