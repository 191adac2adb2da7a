"""Export snapshots: frozen, versioned dataset files with a manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.items import JobStatus as SnapshotStatus  # queued, running, succeeded, failed
from app.models.types import JSONType, UTCDateTime, utcnow

__all__ = ["ExportSnapshot", "SnapshotStatus"]


class ExportSnapshot(Base):
    """One version of a dataset. Once succeeded, its files and this row never change."""

    __tablename__ = "export_snapshots"
    __table_args__ = (
        UniqueConstraint("project_id", "lineage", "version"),
        Index("ix_export_snapshots_project_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # a digest of format + filters + split: the same choices make the next version
    lineage: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(30))
    container: Mapped[str] = mapped_column(String(10))  # jsonl | parquet
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    split: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default=SnapshotStatus.QUEUED)
    # the task copy building it, and when it last said so: a redelivered copy takes over
    # only from a silent one
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)  # items to go through
    done: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of the manifest
    path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
