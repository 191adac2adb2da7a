"""Leases of items to labelers, and the labels they submit."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class AssignmentStatus(StrEnum):
    ACTIVE = "active"
    SUBMITTED = "submitted"
    SKIPPED = "skipped"
    EXPIRED = "expired"  # the lease ran out and someone else took the slot


class Assignment(Base):
    """An item leased to one labeler until ``expires_at``; one per (item, labeler), ever."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id"),
        Index("ix_assignments_item_status", "item_id", "status", "expires_at"),
        Index("ix_assignments_project_user_status", "project_id", "user_id", "status"),
        # The live leases of a project (progress), without reading its finished ones.
        Index("ix_assignments_project_status_expires", "project_id", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=AssignmentStatus.ACTIVE)
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HumanLabel(Base):
    """One labeler's verdict on one item. A second submit finds this row instead of adding one."""

    __tablename__ = "human_labels"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id"),
        Index("ix_human_labels_project_created", "project_id", "created_at"),
        # Labels per labeler on the progress page: read from the index alone.
        Index("ix_human_labels_project_user_time", "project_id", "user_id", "time_spent_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), nullable=True
    )
    rule_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("rule_sets.id", ondelete="SET NULL"), nullable=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    task_type: Mapped[str] = mapped_column(String(20))
    # pairwise: the two responses shown as A and B, and the choice "a" | "b" | "tie"
    response_a_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    response_b_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    choice: Mapped[str | None] = mapped_column(String(4), nullable=True)
    strength: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1 slightly, 2 clearly
    # ranking: response ids, best first
    ranking: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    # rate_and_edit: {response id: 1..7}, and the human-edited response, if any
    ratings: Mapped[dict[str, int] | None] = mapped_column(JSONType, nullable=True)
    edited_response_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    # every task type: {response id: [rule keys the response breaks]}
    rule_violations: Mapped[dict[str, list[str]]] = mapped_column(JSONType, default=dict)
    rationale: Mapped[str] = mapped_column(Text, default="")
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProgressCount(Base):
    """A big project's last full recount of its progress, shared by every web process
    (app.labeling.progress_cache): one row per project, replaced by each recount."""

    __tablename__ = "progress_counts"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            primary_key=True)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    items: Mapped[int] = mapped_column(Integer)  # the project's items at that recount
    counts: Mapped[dict] = mapped_column(JSONType)  # what the progress page shows
    # A process recounting in the background since then (None: nobody); the others wait.
    refresh_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
