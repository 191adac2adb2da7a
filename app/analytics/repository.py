"""Reads for the analytics pages: labels in batches, and daily counts by source."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Adjudication, AiLabel, HumanLabel, Item, ItemConsensus, Response, Review
from app.models.items import ResponseSource

LABEL_COLUMNS = (HumanLabel.id, HumanLabel.item_id, HumanLabel.user_id, HumanLabel.choice,
                 HumanLabel.strength, HumanLabel.response_a_id, HumanLabel.response_b_id,
                 HumanLabel.ranking, HumanLabel.ratings, HumanLabel.time_spent_ms,
                 HumanLabel.created_at)


def labels(db: Session, *, project_id: int, batch: int = 5000) -> Iterator[tuple]:
    """Every human label of the project as a row of LABEL_COLUMNS, in id order."""
    after = 0
    while True:
        rows = db.execute(select(*LABEL_COLUMNS).where(
            HumanLabel.project_id == project_id, HumanLabel.id > after)
            .order_by(HumanLabel.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def first_shown(db: Session, *, project_id: int) -> dict[int, int]:
    """Each item's first response on the labeling page (the "left" one)."""
    return dict(db.execute(
        select(Response.item_id, Response.id)
        .join(Item, Item.id == Response.item_id)
        .where(Item.project_id == project_id, Response.position == 0,
               Response.source != ResponseSource.HUMAN_EDIT)).all())


def consensus_rows(db: Session, *, project_id: int) -> dict[int, tuple]:
    """item id -> (status, source, ranking, pairs)."""
    c = ItemConsensus
    return {row[0]: tuple(row[1:]) for row in db.execute(
        select(c.item_id, c.status, c.source, c.ranking, c.pairs)
        .where(c.project_id == project_id))}


def gold_answers(db: Session, *, project_id: int) -> dict[int, list[int]]:
    return {i: g["ranking"] for i, g in db.execute(
        select(Item.id, Item.gold).where(Item.project_id == project_id, Item.is_gold)) if g}


def daily_counts(db: Session, *, project_id: int) -> dict[str, dict[date, int]]:
    """Labels per day by source: human labels, accepted AI labels, reviews, adjudications."""
    def per_day(column, *where) -> dict[date, int]:  # noqa: ANN001
        day = func.date(column)
        return {_as_date(d): n for d, n in db.execute(
            select(day, func.count()).where(*where).group_by(day).order_by(day))}

    return {
        "human": per_day(HumanLabel.created_at, HumanLabel.project_id == project_id),
        "ai_accepted": per_day(AiLabel.created_at, AiLabel.project_id == project_id,
                               AiLabel.route == "accepted"),
        "ai_reviewed": per_day(Review.created_at, Review.project_id == project_id),
        "adjudicated": per_day(Adjudication.created_at, Adjudication.project_id == project_id),
    }


def _as_date(value) -> date:  # noqa: ANN001
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def ai_labels_with_day(db: Session, *, project_id: int) -> list[tuple[int, list[int], date]]:
    """The latest AI label of each item: (item id, ranking, day)."""
    from app.reviewing.repository import latest_ai_labels

    return [(i, r or [], _as_date(d)) for i, r, d in db.execute(
        select(AiLabel.item_id, AiLabel.ranking, func.date(AiLabel.created_at))
        .where(AiLabel.id.in_(latest_ai_labels(project_id))))]
