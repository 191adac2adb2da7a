"""Queries for the item list: keyset pages in id order, one index range per filter branch.

A filter that is a union ("in progress" is one label or two or a live lease; "done" is k
labels or more) runs one small query per branch, each an index range read in id order and
cut at the page size, and the branches are merged here. One query with an OR would make the
database walk the whole project in id order and test each item, which at 1M items is the
slow path we are avoiding. No OFFSET anywhere: a deep page costs what the first one does.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.models import Assignment, HumanLabel, Item, ItemConsensus, User
from app.models.labels import AssignmentStatus

# Above this many distinct label counts at or over k, "done" is one range (then sorted).
MAX_BRANCHES = 32


def live_leased_item_ids(db: Session, *, project_id: int, now: datetime) -> list[int]:
    """Items a labeler holds right now: a handful (one live lease per labeler)."""
    return list(db.scalars(
        select(Assignment.item_id).distinct()
        .where(Assignment.project_id == project_id, Assignment.status == AssignmentStatus.ACTIVE,
               Assignment.expires_at > now)))


def max_label_count(db: Session, *, project_id: int) -> int:
    """The most labels any item has (one step down the label_count index)."""
    return db.scalar(select(func.max(Item.label_count))
                     .where(Item.project_id == project_id, Item.ready)) or 0


@dataclass(frozen=True)
class Branch:
    """Conditions an item meets, or (``ids``) a handful of items to look up by key."""

    conditions: Sequence[ColumnElement] = ()
    ids: Sequence[int] | None = None


def page_of_items(db: Session, *, project_id: int, branches: Sequence[Branch],
                  on_consensus: bool, after: int | None, before: int | None,
                  limit: int, ids_and_meta: bool = False) -> list:
    """Up to ``limit`` items matching any branch (each a list of conditions), in id order,
    after ``after`` or (going back) the last ``limit`` before ``before``. With
    ``ids_and_meta``, rows of (id, meta) only: what a tag search reads."""
    key = ItemConsensus.item_id if on_consensus else Item.id
    columns = (Item.id, Item.meta) if ids_and_meta else (Item,)
    results: list[list] = []
    for branch in branches:
        query = select(*columns).where(Item.project_id == project_id, Item.ready,
                                       *branch.conditions)
        if on_consensus:
            # Driven by the consensus index (project, status|source, item_id); the item's
            # project is checked on the consensus row too, so the index range is the project's.
            query = query.join(ItemConsensus, ItemConsensus.item_id == Item.id).where(
                ItemConsensus.project_id == project_id)
        if branch.ids is not None:
            # The cursor is applied to the ids here: a key range in SQL would tempt the
            # planner to walk the range and test each item against the list.
            ids = [i for i in branch.ids
                   if (i < before if before is not None else i > (after or 0))]
            if not ids:
                continue
            query = query.where(Item.id.in_(ids))
        elif before is not None:
            query = query.where(key < before)
        else:
            query = query.where(key > (after or 0))
        query = query.order_by(key.desc() if before is not None else key)
        found = db.execute(query.limit(limit))
        results.append(list(found if ids_and_meta else found.scalars()))
    if len(results) <= 1:
        rows = results[0] if results else []
    elif before is not None:
        rows = list(heapq.merge(*results, key=lambda i: -i.id))[:limit]
    else:
        rows = list(heapq.merge(*results, key=lambda i: i.id))[:limit]
    return rows if before is None else rows[::-1]


def items_by_id(db: Session, *, item_ids: Sequence[int]) -> list[Item]:
    if not item_ids:
        return []
    return list(db.scalars(select(Item).where(Item.id.in_(item_ids)).order_by(Item.id)))


def consensus_of(db: Session, *, item_ids: Sequence[int]) -> dict[int, ItemConsensus]:
    if not item_ids:
        return {}
    return {c.item_id: c for c in db.scalars(
        select(ItemConsensus).where(ItemConsensus.item_id.in_(item_ids)))}


def count_consensus_status(db: Session, *, project_id: int, statuses: Sequence[str]) -> int:
    """How many items have one of these consensus statuses (an index-only count)."""
    return db.scalar(select(func.count()).select_from(ItemConsensus).where(
        ItemConsensus.project_id == project_id, ItemConsensus.status.in_(statuses))) or 0


def labels_of(db: Session, *, item_id: int) -> list[tuple[HumanLabel, User]]:
    return [(label, user) for label, user in db.execute(
        select(HumanLabel, User).join(User, User.id == HumanLabel.user_id)
        .where(HumanLabel.item_id == item_id).order_by(HumanLabel.id))]
