"""Batched reads for exports: keyset pagination over labels, never the whole table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import HumanLabel, Item, Response


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
