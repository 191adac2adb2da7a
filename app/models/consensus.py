"""Each item's final preference, the reviewer decisions that settle conflicts, and how far
each labeler's word is trusted."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class ConsensusSource(StrEnum):
    """Where an item's final preference came from, strongest first."""

    GOLD = "gold"  # the admin's known answer
    ADJUDICATED = "adjudicated"  # a reviewer settled the labelers' conflict
    AI_REVIEWED = "ai_reviewed"  # a reviewer approved, overrode or edited the AI label
    HUMAN = "human"  # aggregated human labels
    AI_ACCEPTED = "ai_accepted"  # a confident, consistent AI label nobody reviewed


class ConsensusStatus(StrEnum):
    DECIDED = "decided"
    TIE = "tie"  # the labels say the responses are equally good: no pair to train on
    CONFLICT = "conflict"  # the labels disagree beyond the project's threshold
    INTRANSITIVE = "intransitive"  # the majority prefers A>B, B>C and C>A
    PENDING = "pending"  # nothing to decide from yet


class Weighting(StrEnum):
    NONE = "none"  # one labeler, one vote
    RELIABILITY = "reliability"  # votes weighted by each labeler's estimated accuracy


class ItemConsensus(Base):
    """Derived from the item's labels by app.consensus, never edited by hand."""

    __tablename__ = "item_consensus"
    # item_id last: the item list's status and source filters read them in id order.
    __table_args__ = (
        Index("ix_item_consensus_project_status", "project_id", "status", "item_id"),
        Index("ix_item_consensus_project_source", "project_id", "source", "item_id"),
    )

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # response ids, best first
    ranking: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    # [chosen id, rejected id, P(chosen better), margin in strength units 0..2]
    pairs: Mapped[list[list[Any]]] = mapped_column(JSONType, default=list)
    pair_count: Mapped[int] = mapped_column(Integer, default=0)
    # the share of human comparisons that agree with the consensus; None under two labels
    agreement: Mapped[float | None] = mapped_column(Float, nullable=True)
    human_labels: Mapped[int] = mapped_column(Integer, default=0)
    # the AI label's confidence, when the consensus rests on one
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    rule_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("rule_sets.id", ondelete="SET NULL"), nullable=True
    )
    cycle: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Adjudication(Base):
    """A reviewer's decision on an item whose labels conflict. The latest one counts."""

    __tablename__ = "adjudications"
    __table_args__ = (Index("ix_adjudications_item", "item_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    # response ids best first; None when the reviewer judged the responses equally good
    ranking: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LabelerReliability(Base):
    """A labeler's accuracy as estimated by Dawid–Skene over the project's labels."""

    __tablename__ = "labeler_reliability"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    accuracy: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    comparisons: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
