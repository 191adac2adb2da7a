"""The AI judge: per-project configuration, runs, their items, AI labels and a call cache."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Route(StrEnum):
    ACCEPTED = "accepted"  # consistent and confident: the AI label stands
    REVIEW = "review"  # accepted, but sampled for a reviewer to check
    HUMAN = "human"  # inconsistent or uncertain: humans label it first


class JudgeConfig(Base):
    """How a project's judge is called. The API key itself is never stored: only the name
    of the environment variable that holds it."""

    __tablename__ = "judge_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), unique=True
    )
    provider: Mapped[str] = mapped_column(String(20), default="local")
    model: Mapped[str] = mapped_column(String(500), default="")
    base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    api_key_env: Mapped[str | None] = mapped_column(String(100), nullable=True)
    template: Mapped[str] = mapped_column(Text)
    sampling: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    confidence_threshold: Mapped[float] = mapped_column(Float, default=0.7)
    review_fraction: Mapped[float] = mapped_column(Float, default=0.1)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=4)
    requests_per_minute: Mapped[int] = mapped_column(Integer, default=600)
    batch_size: Mapped[int] = mapped_column(Integer, default=8)
    judge_rules: Mapped[bool] = mapped_column(Boolean, default=True)
    show_suggestions: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JudgeRun(Base):
    __tablename__ = "judge_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    rule_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("rule_sets.id", ondelete="SET NULL"), nullable=True
    )
    # The configuration as it was when the run started; later edits do not change it.
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    selection: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JudgeRunItem(Base):
    """One item of a run; progress is counted from these rows."""

    __tablename__ = "judge_run_items"
    __table_args__ = (
        UniqueConstraint("run_id", "item_id"),
        Index("ix_judge_run_items_run_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("judge_runs.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=RunItemStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AiLabel(Base):
    """The judge's verdict on one item in one run (one row, however often a task runs)."""

    __tablename__ = "ai_labels"
    __table_args__ = (
        UniqueConstraint("run_id", "item_id"),
        Index("ix_ai_labels_item", "item_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("judge_runs.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rule_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("rule_sets.id", ondelete="SET NULL"), nullable=True
    )
    response_a_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    response_b_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    # P(A is better) read with A shown first, and with B shown first; their mean.
    p_a_first: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_a_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    preference: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    consistent: Mapped[bool] = mapped_column(Boolean)
    choice: Mapped[str] = mapped_column(String(4))  # "a" or "b" (best for rankings)
    # Rankings: response ids best first, and every judged pair with its probabilities.
    ranking: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    pairs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    # {response id: {rule key: P(the response follows the rule)}}
    rule_verdicts: Mapped[dict[str, dict[str, float]]] = mapped_column(JSONType, default=dict)
    rationale: Mapped[str | None] = mapped_column(Text, nullable=True)
    route: Mapped[str] = mapped_column(String(20))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JudgeCacheEntry(Base):
    """Identical judge calls (model, prompt text, options) are answered from here."""

    __tablename__ = "judge_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JudgePreview(Base):
    """The judge's answer on one real item with a draft configuration, before any run."""

    __tablename__ = "judge_previews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    rendered: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewAction(StrEnum):
    APPROVE = "approve"
    OVERRIDE = "override"
    EDIT = "edit"


class Review(Base):
    """A reviewer's decision on an AI label. Every action is kept; the latest one counts."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_ai_label", "ai_label_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ai_label_id: Mapped[int] = mapped_column(ForeignKey("ai_labels.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    action: Mapped[str] = mapped_column(String(20))
    # The verdict that stands after the review: response ids best first.
    ranking: Mapped[list[int]] = mapped_column(JSONType)
    edited_response_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL"), nullable=True
    )
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
