"""What a client asks for when it makes an export snapshot."""

from __future__ import annotations

import hashlib

import orjson
from pydantic import BaseModel, ConfigDict, Field

from app.exports.filters import ExportFilters
from app.exports.formats import Container, ExportFormat


class SplitIn(BaseModel):
    """A seeded train/test split by prompt: every pair of one prompt lands on one side."""

    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(default=0, ge=0, le=2**31)


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = ExportFormat.STANDARD
    container: Container = Container.JSONL
    margin: bool = True  # preference formats: a margin column from strength / probability
    filters: ExportFilters = Field(default_factory=ExportFilters)
    split: SplitIn | None = None

    def lineage(self) -> str:
        """Same choices, same lineage: a new snapshot of it is the next version."""
        spec = self.model_dump(mode="json")
        return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def title(self) -> str:
        parts = [self.format.value, self.container.value]
        if self.filters.sources != sorted(ExportFilters().sources):
            parts.append("+".join(self.filters.sources))
        if self.split is not None:
            parts.append(f"split {self.split.test_fraction:g}")
        return " · ".join(parts)
