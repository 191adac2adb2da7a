"""Items (a prompt and its responses) and the import jobs that create them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class ResponseSource(StrEnum):
    IMPORTED = "imported"
    GENERATED = "generated"
    HUMAN_EDIT = "human_edit"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        Index("ix_items_project_ready_id", "project_id", "ready", "id"),
        # The human queue walks this in order and meets only items that still want labels:
        # finished, AI-accepted and gold items drop out of it (in_queue), so "next item"
        # costs the same in a fresh project and in one of a million finished items.
        Index("ix_items_human_queue", "project_id", "ready", "in_queue", "queue_rank", "id"),
        # Stale items in id order, before each export and consensus page (migration 0013).
        Index("ix_items_consensus_stale", "project_id", "consensus_stale", "ready", "id"),
        # The item list's filters walk these in id order (keyset pages), and the progress
        # counts read label_count from the first one without touching the table.
        Index("ix_items_project_ready_label_count", "project_id", "ready", "label_count", "id"),
        Index("ix_items_project_gold", "project_id", "ready", "is_gold", "id"),
        Index("ix_items_project_round", "project_id", "ready", "round", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    # A string, or a list of {"role", "content"} chat messages.
    prompt: Mapped[Any] = mapped_column(JSONType)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    import_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("import_jobs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # False while a background import is still writing; such items are invisible everywhere,
    # and the job flips them all in one statement at the end (nothing half-imported shows).
    ready: Mapped[bool] = mapped_column(Boolean, default=True)
    # Human labels on the item, recounted from human_labels under the item's lock whenever
    # one is added; it lets the queue skip finished items without counting on every call.
    label_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # From the item's latest AI label, set when that label is written: an accepted AI label
    # takes the item out of the human queue; an uncertain one puts it first in line.
    ai_accepted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # 0 = the judge was unsure (humans first), 1 = everything else; ascending, like the id,
    # so "next item" reads the queue index in order instead of sorting the project.
    queue_rank: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Whether the item still wants human labels: fewer than k, not AI-accepted, not gold
    # (app.items.repository.in_queue_when). Rewritten by every statement that changes one of
    # those; the queue also checks the conditions themselves, so a stale True costs only time.
    in_queue: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Set whenever a label, AI label, review or adjudication of the item changes;
    # app.consensus recomputes the item's consensus and clears it.
    consensus_stale: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A gold item's known answer, {"ranking": [response ids best first]}; gold items are
    # mixed into every labeler's queue unannounced, to measure accuracy.
    gold: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Labeling round: imported items are round 1; a generation run's items the next one.
    round: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    generation_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("generation_runs.id", ondelete="SET NULL"),
        nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ItemTag(Base):
    """One tag of an item (app.items.tags decides which), written with the item: the item
    list's tag filter reads the primary key as an index range of the project's items with
    that tag, in id order. An item's metadata never changes after it is written, so
    neither do these rows."""

    __tablename__ = "item_tags"
    __table_args__ = (
        # For the foreign key: deleting items (a failed import, a whole project) finds their
        # tags by this instead of reading the table once per item.
        Index("ix_item_tags_item_id", "item_id"),
    )

    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"),
                                         primary_key=True)


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_item_id_position", "item_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source: Mapped[str] = mapped_column(String(20), default=ResponseSource.IMPORTED)
    parent_response_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # A generated response: the run that asked for it (model, checkpoint, sampling).
    generation_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("generation_runs.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImportJob(Base):
    """A large import, run by a Celery worker; the file waits here until it is processed."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    filename: Mapped[str] = mapped_column(String(300))
    file_format: Mapped[str] = mapped_column(String(10))
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED)
    phase: Mapped[str] = mapped_column(String(20), default="queued")
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The copy of the import task working on the job (app.core.leases).
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
