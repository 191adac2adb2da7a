"""Labeling projects, their members and their versioned rule sets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, query_expression

from app.core.db import Base
from app.models.types import UTCDateTime, utcnow


class TaskType(StrEnum):
    PAIRWISE = "pairwise"
    RANKING = "ranking"
    RATE_AND_EDIT = "rate_and_edit"


class MemberRole(StrEnum):
    ADMIN = "admin"
    REVIEWER = "reviewer"
    LABELER = "labeler"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(20))
    instructions_md: Mapped[str] = mapped_column(Text, default="")
    overlap_k: Mapped[int] = mapped_column(Integer, default=1)
    lease_minutes: Mapped[int] = mapped_column(Integer, default=30)
    # Consensus policy (app.consensus): "none" or "reliability" (Dawid–Skene) weighting,
    # the agreement below which an item goes to adjudication, and the share of "next item"
    # calls that hand out a gold item.
    weighting: Mapped[str] = mapped_column(String(20), default="none", server_default="none")
    conflict_threshold: Mapped[float] = mapped_column(Float, default=0.6, server_default="0.6")
    gold_rate: Mapped[float] = mapped_column(Float, default=0.1, server_default="0.1")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Not columns: read with the project by the query that authorizes a request
    # (app.projects.repository), so the labeling hot path needs no query of its own for
    # them. None where the project was loaded otherwise: then ask the database.
    # The latest rule-set version: its id (0: no rules yet) and when it was made (with the
    # id, what a cache of rule sets checks, ids being reused in a database made anew).
    current_rule_set_id: Mapped[int | None] = query_expression()
    current_rule_set_at: Mapped[datetime | None] = query_expression()
    # Whether the judge's suggestions are shown to labelers (app.judging).
    shows_suggestions: Mapped[bool | None] = query_expression()


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))


class RuleSet(Base):
    """One version of a project's rules; editing the rules makes a new version."""

    __tablename__ = "rule_sets"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rule(Base):
    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("rule_set_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_set_id: Mapped[int] = mapped_column(ForeignKey("rule_sets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(10), default="medium", server_default="medium")
    position: Mapped[int] = mapped_column(Integer)
