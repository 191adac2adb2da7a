"""Generation runs: a model writes K responses to each prompt, as the next round's items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.items import JobStatus as GenerationStatus
from app.models.types import JSONType, UTCDateTime, utcnow

__all__ = ["GenerationRun", "GenerationStatus"]


class GenerationRun(Base):
    """Asks a model (local, a checkpoint, or an OpenAI-compatible endpoint) for ``k``
    responses to each prompt of a round; the answers become new items of the next round,
    invisible until the run has written all of them."""

    __tablename__ = "generation_runs"
    __table_args__ = (Index("ix_generation_runs_project_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source_round: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: all
    round: Mapped[int] = mapped_column(Integer)  # the round its items belong to
    k: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(20))  # local | openai
    model: Mapped[str] = mapped_column(String(1000))  # folder, hub name, smollm2, or a name
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_checkpoints.id", ondelete="SET NULL"), nullable=True)
    base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    api_key_env: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sampling: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=GenerationStatus.QUEUED)
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
