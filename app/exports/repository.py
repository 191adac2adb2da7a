"""Batched reads for exports: keyset pagination over labels, never the whole table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AiLabel, HumanLabel, Item, Response, Review
from app.reviewing.repository import latest_ai_labels, latest_reviews


def label_batch(db: Session, *, project_id: int, after_id: int,
                limit: int) -> list[tuple[HumanLabel, Item]]:
    rows = db.execute(
        select(HumanLabel, Item)
        .join(Item, Item.id == HumanLabel.item_id)
        .where(HumanLabel.project_id == project_id, HumanLabel.id > after_id, Item.ready)
        .order_by(HumanLabel.id)
        .limit(limit)
    )
    return [(label, item) for label, item in rows]


def responses_by_id(db: Session, *, item_ids: list[int]) -> dict[int, Response]:
    if not item_ids:
        return {}
    return {r.id: r for r in db.scalars(select(Response).where(Response.item_id.in_(item_ids)))}


def ai_label_batch(db: Session, *, project_id: int, after_id: int,
                   limit: int) -> list[tuple[AiLabel, Item, Review | None]]:
    """Latest AI label of each item (a later run supersedes), with its latest review."""
    latest = latest_ai_labels(project_id)
    rows = db.execute(
        select(AiLabel, Item)
        .join(Item, Item.id == AiLabel.item_id)
        .where(AiLabel.id.in_(latest), AiLabel.id > after_id, Item.ready)
        .order_by(AiLabel.id)
        .limit(limit)
    ).all()
    reviews = latest_reviews(db, ai_label_ids=[label.id for label, _ in rows])
    return [(label, item, reviews.get(label.id)) for label, item in rows]
