"""Queries for reviews of AI labels."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.core.db import ONE_ROW
from app.models import AiLabel, Review


def latest_ai_labels(project_id: int) -> Select:
    """The latest AI label of each item of the project (a later run supersedes)."""
    return (select(func.max(AiLabel.id))
            .where(AiLabel.project_id == project_id)
            .group_by(AiLabel.item_id))


def next_to_review(db: Session, *, project_id: int, skip: list[int]) -> AiLabel | None:
    query = (
        select(AiLabel)
        .where(AiLabel.id.in_(latest_ai_labels(project_id)), AiLabel.route == "review",
               ~select(Review.id).where(Review.ai_label_id == AiLabel.id).exists())
        .order_by(AiLabel.id)
        .limit(ONE_ROW)
    )
    if skip:
        query = query.where(AiLabel.id.not_in(skip))
    return db.scalar(query)


def count_to_review(db: Session, *, project_id: int) -> int:
    return db.scalar(
        select(func.count()).select_from(AiLabel)
        .where(AiLabel.id.in_(latest_ai_labels(project_id)), AiLabel.route == "review",
               ~select(Review.id).where(Review.ai_label_id == AiLabel.id).exists())
    ) or 0


def review_by_key(db: Session, *, key: str) -> Review | None:
    return db.scalar(select(Review).where(Review.idempotency_key == key))


def latest_reviews(db: Session, *, ai_label_ids: list[int]) -> dict[int, Review]:
    if not ai_label_ids:
        return {}
    latest = (select(func.max(Review.id)).where(Review.ai_label_id.in_(ai_label_ids))
              .group_by(Review.ai_label_id))
    return {r.ai_label_id: r for r in db.scalars(select(Review).where(Review.id.in_(latest)))}
