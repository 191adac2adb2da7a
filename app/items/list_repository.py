"""Queries for the item list: keyset pages in id order, one index range per filter branch.

A filter that is a union ("in progress" is one label or two or a live lease; "done" is k
labels or more) runs one small query per branch, each an index range read in id order and
cut at the page size, and the branches are merged here. One query with an OR would make the
database walk the whole project in id order and test each item, which at 1M items is the
slow path we are avoiding. No OFFSET anywhere: a deep page costs what the first one does.
A tag is a range of item_tags (project, tag, item_id), joined to each branch: one of the two
ranges is walked and the other looked up per item (see _Tagged).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select, text
from sqlalchemy.orm import Session

from app.core.db import ONE_ROW
from app.models import Assignment, HumanLabel, Item, ItemConsensus, ItemTag, User
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


# SQLite walks the id-ordered index for a prefix filter, testing each item's external id: a
# prefix whose items come late in id order read nearly the whole project (~100 ms at 1M).
# A prefix with fewer than this many items reads its external-id range instead, then sorts.
SMALL_PREFIX = 5000


def small_prefix(db: Session, *, project_id: int, prefix: str) -> bool:
    """Whether fewer than SMALL_PREFIX of the project's items have external ids starting
    with ``prefix`` (a bounded read of the (project, external_id) index)."""
    return _fewer_than(db, select(Item.id).where(
        Item.project_id == project_id, Item.external_id >= prefix,
        Item.external_id < prefix + "\U0010ffff"), SMALL_PREFIX)


def _fewer_than(db: Session, query: Select, n: int) -> bool:
    """Whether ``query`` has fewer than ``n`` rows: a read of at most ``n``."""
    return (db.scalar(select(func.count()).select_from(query.limit(n).subquery())) or 0) < n


def page_of_items(db: Session, *, project_id: int, branches: Sequence[Branch],
                  on_consensus: bool, tag: str | None, after: int | None,
                  before: int | None, limit: int, by_external_id: bool = False) -> list[Item]:
    """Up to ``limit`` items matching any branch (each a list of conditions) and having
    ``tag``, in id order, after ``after`` or (going back) the last ``limit`` before
    ``before``. ``by_external_id``: the conditions hold a small external-id prefix range,
    to be read rather than the id order walked (SQLite; PostgreSQL chooses by its
    statistics)."""
    results: list[list[Item]] = []
    tagged = None if tag is None else _Tagged(db, project_id, tag)
    for branch in branches:
        query = select(Item).where(Item.project_id == project_id, Item.ready,
                                   *branch.conditions)
        # ``id + 0`` is the id that no index serves: SQLite then reads the prefix's range of
        # the (project, external_id) index and sorts what it found, instead of walking the
        # project's ids in order and testing each item's external id.
        keys: list[ColumnElement] = [Item.id + 0 if by_external_id else Item.id]
        if on_consensus:
            # Driven by the consensus index (project, status|source, item_id); the item's
            # project is checked on the consensus row too, so the index range is the project's.
            query = query.join(ItemConsensus, ItemConsensus.item_id == Item.id).where(
                ItemConsensus.project_id == project_id)
            keys.insert(0, ItemConsensus.item_id)
        key = keys[0]
        low, high = after or 0, before
        if branch.ids is not None:
            # The cursor is applied to the ids here: a key range in SQL would tempt the
            # planner to walk the range and test each item against the list.
            ids = [i for i in branch.ids if (i < high if high is not None else i > low)]
            if not ids:
                continue
            query = query.where(Item.id.in_(ids))
            key, keys = Item.id, []
        elif tagged is not None and (on_consensus or branch.conditions):
            walk = tagged.walk(query.with_only_columns(key), keys, low=low, high=high)
            if walk is None:
                continue  # no item past the cursor has both
            walk_tag, low, high = walk
            key = ItemTag.item_id if walk_tag else key
        elif tagged is not None:
            key = ItemTag.item_id
        if tagged is not None:
            query = query.join(ItemTag, ItemTag.item_id == Item.id).where(*tagged.where)
            keys += [ItemTag.item_id] if keys else []
        # The cursor bounds every joined copy of the id: PostgreSQL does not carry a range
        # across a join, and a merge join read the unbounded side from its start (170 ms
        # to a deep page of a common tag).
        query = query.where(*_past(keys, low, high))
        query = query.order_by(key.desc() if before is not None else key)
        results.append(list(db.scalars(query.limit(limit))))
    if len(results) <= 1:
        rows = results[0] if results else []
    elif before is not None:
        rows = list(heapq.merge(*results, key=lambda i: -i.id))[:limit]
    else:
        rows = list(heapq.merge(*results, key=lambda i: i.id))[:limit]
    return rows if before is None else rows[::-1]


def _past(keys: Sequence[ColumnElement], low: int,
          high: int | None) -> list[ColumnElement[bool]]:
    """Each key past the cursor: below ``high`` going back, else above ``low``."""
    return [k < high if high is not None else k > low for k in keys]


class _Tagged:
    """The tag's items (an index range of item_tags) as one side of an intersection with
    another filter's range: where the walk starts, and which of the two it walks."""

    # A range with fewer items than this past the start is walked, and each of its items
    # looked up in the other: a walk of at most this many. Past it, on both sides, the walk
    # is about limit * items / (the other side's items): the fewer, the longer.
    SMALL = 5000

    def __init__(self, db: Session, project_id: int, tag: str) -> None:
        self.db = db
        self.where = (ItemTag.project_id == project_id, ItemTag.tag == tag)
        self.postgresql = db.get_bind().dialect.name == "postgresql"
        if self.postgresql:
            # The tag's size decides the plan, and a prepared statement's generic plan
            # (psycopg prepares after five runs) knows no tag: one walked round 2 for a rare
            # tag (120 ms). Custom plans, for this transaction (a page read) only.
            db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

    def walk(self, other: Select, keys: list[ColumnElement], *, low: int,
             high: int | None) -> tuple[bool, int, int | None] | None:
        """Whether to walk the tag's range (else the other's), and the bounds to walk: from
        the later of the two ranges' first items past the cursor, since an item in both is
        in each (a round or a tag of a later import skips the earlier imports' ids); None if
        either range has nothing past the cursor."""
        mine = select(ItemTag.item_id).where(*self.where)
        edges = [self._edge(q, k, low, high) for q, k in ((mine, [ItemTag.item_id]),
                                                          (other, keys))]
        if None in edges:
            return None
        if high is None:
            low = max(edges) - 1
        else:
            high = min(edges) + 1
        if self.postgresql:
            return True, low, high  # the planner chooses by the tag's statistics
        # SQLite has no statistics per tag, and walks the range of the ORDER BY's index.
        return (self._fewer(mine, [ItemTag.item_id], low, high)
                or not self._fewer(other, keys, low, high)), low, high

    def _edge(self, query: Select, keys: list[ColumnElement], low: int,
              high: int | None) -> int | None:
        """The first key past the cursor (the last before it, going back)."""
        query = query.where(*_past(keys, low, high))
        key = keys[0]
        return self.db.scalar(query.order_by(key.desc() if high is not None else key)
                              .limit(ONE_ROW))

    def _fewer(self, query: Select, keys: list[ColumnElement], low: int,
               high: int | None) -> bool:
        """Whether fewer than SMALL rows lie past the cursor: an index range read so far."""
        return _fewer_than(self.db, query.where(*_past(keys, low, high)), self.SMALL)


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
