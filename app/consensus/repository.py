"""Queries for consensus: stale items, what their labels say, and the adjudication queue."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select, true, update
from sqlalchemy.orm import Session

from app.core.db import ONE_ROW
from app.models import (
    Adjudication,
    AiLabel,
    HumanLabel,
    Item,
    ItemConsensus,
    LabelerReliability,
    Response,
    Review,
)
from app.models.consensus import ConsensusStatus
from app.models.items import ResponseSource

NEEDS_ADJUDICATION = (ConsensusStatus.CONFLICT, ConsensusStatus.INTRANSITIVE)
# ``= true`` rather than the bare column: SQLite matches an index column only in a comparison,
# and without the index it read the whole project (250 ms at 1M items, before every export).
STALE = Item.consensus_stale == true()


def mark_stale(db: Session, *, item_ids: Iterable[int]) -> None:
    ids = list(item_ids)
    if ids:
        db.execute(update(Item).where(Item.id.in_(ids)).values(consensus_stale=True))


def mark_project_stale(db: Session, *, project_id: int) -> None:
    db.execute(update(Item).where(Item.project_id == project_id, Item.ready)
               .values(consensus_stale=True))


def clear_stale(db: Session, *, item_ids: list[int]) -> None:
    db.execute(update(Item).where(Item.id.in_(item_ids)).values(consensus_stale=False))


def claim_stale(db: Session, *, project_id: int, limit: int) -> list[int]:
    """Up to ``limit`` stale items, their flag cleared in this (write) transaction: a label
    that lands meanwhile sets it again, so the next refresh sees it."""
    ids = list(db.scalars(
        select(Item.id).where(Item.project_id == project_id, STALE, Item.ready)
        .order_by(Item.id).limit(limit)
    ))
    if ids:
        db.execute(update(Item).where(Item.id.in_(ids)).values(consensus_stale=False))
    return ids


def count_stale(db: Session, *, project_id: int) -> int:
    return db.scalar(select(func.count()).select_from(Item).where(
        Item.project_id == project_id, STALE, Item.ready)) or 0


@dataclass
class ItemInputs:
    """Everything an item's consensus is computed from."""

    item_id: int
    gold: dict | None
    responses: list[int] = field(default_factory=list)  # the originals, in position order
    edits: list[tuple[int, int]] = field(default_factory=list)  # (edited, parent)
    labels: list[HumanLabel] = field(default_factory=list)
    ai_label: AiLabel | None = None
    review: Review | None = None
    reviewed_label: AiLabel | None = None  # the AI label the review is about
    adjudication: Adjudication | None = None


def inputs_for(db: Session, *, item_ids: list[int]) -> list[ItemInputs]:
    by_item = {i: ItemInputs(item_id=i, gold=g) for i, g in db.execute(
        select(Item.id, Item.gold).where(Item.id.in_(item_ids)))}
    for rid, item_id, source, parent in db.execute(
        select(Response.id, Response.item_id, Response.source, Response.parent_response_id)
        .where(Response.item_id.in_(item_ids)).order_by(Response.item_id, Response.position)
    ):
        if source == ResponseSource.HUMAN_EDIT:
            if parent is not None:
                by_item[item_id].edits.append((rid, parent))
        else:
            by_item[item_id].responses.append(rid)
    for label in db.scalars(select(HumanLabel).where(HumanLabel.item_id.in_(item_ids))
                            .order_by(HumanLabel.id)):
        by_item[label.item_id].labels.append(label)
    latest_ai = select(func.max(AiLabel.id)).where(AiLabel.item_id.in_(item_ids)).group_by(
        AiLabel.item_id)
    for label in db.scalars(select(AiLabel).where(AiLabel.id.in_(latest_ai))):
        by_item[label.item_id].ai_label = label
    # The item's latest review stands, whichever judge run's label it reviewed: a later
    # run does not undo a reviewer's decision.
    latest_review = select(func.max(Review.id)).where(Review.item_id.in_(item_ids)
                                                      ).group_by(Review.item_id)
    reviews = list(db.scalars(select(Review).where(Review.id.in_(latest_review))))
    reviewed = {label.id: label for label in db.scalars(select(AiLabel).where(
        AiLabel.id.in_([r.ai_label_id for r in reviews])))} if reviews else {}
    for review in reviews:
        by_item[review.item_id].review = review
        by_item[review.item_id].reviewed_label = reviewed.get(review.ai_label_id)
    latest_adj = select(func.max(Adjudication.id)).where(
        Adjudication.item_id.in_(item_ids)).group_by(Adjudication.item_id)
    for adj in db.scalars(select(Adjudication).where(Adjudication.id.in_(latest_adj))):
        by_item[adj.item_id].adjudication = adj
    return [by_item[i] for i in item_ids if i in by_item]


def replace_consensus(db: Session, *, rows: list[dict]) -> None:
    if not rows:
        return
    db.execute(delete(ItemConsensus).where(
        ItemConsensus.item_id.in_([r["item_id"] for r in rows])))
    db.execute(insert(ItemConsensus), rows)


def human_labels_stream(db: Session, *, project_id: int, batch: int = 5000
                        ) -> Iterator[HumanLabel]:
    after = 0
    while True:
        rows = list(db.scalars(select(HumanLabel).where(
            HumanLabel.project_id == project_id, HumanLabel.id > after)
            .order_by(HumanLabel.id).limit(batch)))
        if not rows:
            return
        yield from rows
        after = rows[-1].id
        db.expunge_all()


def reliability(db: Session, *, project_id: int) -> dict[int, LabelerReliability]:
    return {r.user_id: r for r in db.scalars(select(LabelerReliability).where(
        LabelerReliability.project_id == project_id))}


def save_reliability(db: Session, *, project_id: int, rows: list[dict]) -> None:
    db.execute(delete(LabelerReliability).where(LabelerReliability.project_id == project_id))
    if rows:
        db.execute(insert(LabelerReliability), rows)


def consensus_counts(db: Session, *, project_id: int) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for status, n in db.execute(
        select(ItemConsensus.status, func.count()).where(ItemConsensus.project_id == project_id)
        .group_by(ItemConsensus.status)
    ):
        counts[status] = n
    return dict(counts)


def next_to_adjudicate(db: Session, *, project_id: int, skip: list[int]) -> ItemConsensus | None:
    query = (select(ItemConsensus)
             .where(ItemConsensus.project_id == project_id,
                    ItemConsensus.status.in_(NEEDS_ADJUDICATION))
             .order_by(ItemConsensus.item_id).limit(ONE_ROW))
    if skip:
        query = query.where(ItemConsensus.item_id.not_in(skip))
    return db.scalar(query)


def count_to_adjudicate(db: Session, *, project_id: int) -> int:
    return db.scalar(select(func.count()).select_from(ItemConsensus).where(
        ItemConsensus.project_id == project_id,
        ItemConsensus.status.in_(NEEDS_ADJUDICATION))) or 0


def adjudication_by_key(db: Session, *, key: str) -> Adjudication | None:
    return db.scalar(select(Adjudication).where(Adjudication.idempotency_key == key))


def get_consensus(db: Session, *, item_id: int) -> ItemConsensus | None:
    return db.get(ItemConsensus, item_id)


def item_by_external_id(db: Session, *, project_id: int, external_id: str) -> Item | None:
    return db.scalar(select(Item).where(Item.project_id == project_id,
                                        Item.external_id == external_id, Item.ready))


def gold_items(db: Session, *, project_id: int, limit: int = 500) -> list[Item]:
    return list(db.scalars(select(Item).where(Item.project_id == project_id, Item.is_gold)
                           .order_by(Item.id).limit(limit)))
