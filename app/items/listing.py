"""The project's item list: a page of items under filters, with each item's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.exports.filters import item_tags
from app.items import list_repository as repo
from app.items import repository as items_repo
from app.items.chat import prompt_text
from app.items.list_schemas import Cursor, ItemQuery, ItemStatus
from app.models import HumanLabel, Item, ItemConsensus, Project, Response, User
from app.models.consensus import ConsensusStatus
from app.models.types import utcnow

PREVIEW_CHARS = 160
CONFLICTS = (ConsensusStatus.CONFLICT, ConsensusStatus.INTRANSITIVE)


@dataclass(frozen=True)
class ItemRow:
    item: Item
    status: ItemStatus
    consensus: ItemConsensus | None

    @property
    def preview(self) -> str:
        text = " ".join(prompt_text(self.item.prompt).split())
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

    def as_json(self) -> dict[str, Any]:
        i, c = self.item, self.consensus
        return {"id": i.id, "external_id": i.external_id, "prompt_preview": self.preview,
                "status": self.status, "label_count": i.label_count,
                "consensus": None if c is None else {"status": c.status, "source": c.source},
                "round": i.round, "gold": i.is_gold, "tags": sorted(item_tags(i.meta)),
                "created_at": i.created_at.isoformat()}


@dataclass(frozen=True)
class ItemPage:
    rows: list[ItemRow]
    next_cursor: Cursor | None
    prev_cursor: Cursor | None


def list_items(db: Session, *, project: Project, query: ItemQuery) -> ItemPage:
    """One page of the project's items in id order, under the query's filters."""
    now = utcnow()
    leased = repo.live_leased_item_ids(db, project_id=project.id, now=now)
    branches, on_consensus = _branches(db, project=project, query=query, leased=leased)
    cursor = query.cursor
    before = cursor.item_id if cursor is not None and cursor.before else None
    after = cursor.item_id if cursor is not None and not cursor.before else None
    by_external_id = (query.prefix is not None and db.get_bind().dialect.name == "sqlite"
                      and repo.small_prefix(db, project_id=project.id, prefix=query.prefix))
    items = repo.page_of_items(db, project_id=project.id, branches=branches,
                               on_consensus=on_consensus, tag=query.tag, after=after,
                               before=before, limit=query.limit + 1,
                               by_external_id=by_external_id)
    more = len(items) > query.limit
    items = (items[1:] if before is not None else items[:-1]) if more else items
    next_cursor = prev_cursor = None
    if before is None:
        if more:
            next_cursor = Cursor(items[-1].id)
        if after:
            prev_cursor = Cursor(items[0].id if items else after + 1, before=True)
    else:
        if more:
            prev_cursor = Cursor(items[0].id, before=True)
        next_cursor = Cursor(items[-1].id if items else max(before - 1, 0))
    return ItemPage(rows=_rows(db, project, items, leased, now), next_cursor=next_cursor,
                    prev_cursor=prev_cursor)


def _branches(db: Session, *, project: Project, query: ItemQuery,
              leased: list[int]) -> tuple[list[repo.Branch], bool]:
    """The filters as branches (an item matching any branch matches), and whether they read
    the consensus table."""
    common: list[ColumnElement] = []
    on_consensus = False
    if query.prefix is not None:
        # A range on the (project, external_id) index; LIKE alone would not use it.
        common += [Item.external_id >= query.prefix,
                   Item.external_id < query.prefix + "\U0010ffff",
                   Item.external_id.startswith(query.prefix, autoescape=True)]
    if query.round is not None:
        common.append(Item.round == query.round)
    if query.source is not None:
        common.append(ItemConsensus.source == query.source)
        on_consensus = True
    k = project.overlap_k
    status = query.status
    branches: list[repo.Branch]
    if status is None:
        branches = [repo.Branch()]
    elif status == ItemStatus.GOLD:
        branches = [repo.Branch([Item.is_gold])]
    elif status == ItemStatus.CONFLICT:
        branches = [repo.Branch([ItemConsensus.status == s]) for s in CONFLICTS]
        on_consensus = True
    elif status == ItemStatus.TODO:
        branches = [repo.Branch([Item.label_count == 0, Item.id.not_in(leased)])]
    elif status == ItemStatus.IN_PROGRESS:
        branches = [repo.Branch([Item.label_count == n]) for n in range(1, k)]
        # Unlabeled but held by a labeler now: a handful, looked up by id.
        branches.append(repo.Branch([Item.label_count == 0], ids=leased))
    else:  # done
        top = repo.max_label_count(db, project_id=project.id)
        branches = ([repo.Branch([Item.label_count == n]) for n in range(k, top + 1)]
                    if top - k < repo.MAX_BRANCHES else [repo.Branch([Item.label_count >= k])])
    if not branches:  # nothing can match (say, done in a project without labels)
        branches = [repo.Branch(ids=[])]
    return [repo.Branch([*common, *b.conditions], ids=b.ids) for b in branches], on_consensus


def _rows(db: Session, project: Project, items: list[Item], leased: list[int],
          now: datetime) -> list[ItemRow]:
    consensus = repo.consensus_of(db, item_ids=[i.id for i in items])
    held = set(leased)
    k = project.overlap_k
    return [ItemRow(item=i, consensus=consensus.get(i.id), status=(
        ItemStatus.DONE if i.label_count >= k else ItemStatus.IN_PROGRESS
        if i.label_count > 0 or i.id in held else ItemStatus.TODO)) for i in items]


def count_matching(db: Session, *, project: Project, query: ItemQuery) -> int | None:
    """How many items match, where that comes without counting a filtered 1M set: the
    progress counts (no filter, or a status alone) or a small index count (conflicts).
    None for the other filters."""
    from app.labeling.service import status_counts

    if query.filter_params().keys() - {"status", "limit"}:
        return None
    if query.status == ItemStatus.CONFLICT:
        return repo.count_consensus_status(db, project_id=project.id, statuses=CONFLICTS)
    if query.status == ItemStatus.GOLD:
        return None
    counts = status_counts(db, project=project)
    return sum(counts.values()) if query.status is None else counts[query.status.value]


@dataclass(frozen=True)
class ItemDetail:
    row: ItemRow
    responses: list[Response]
    labels: list[tuple[HumanLabel, User]]


def item_detail(db: Session, *, project: Project, item_id: int) -> ItemDetail:
    """An item with its responses (edits included), its labels and its consensus."""
    item = items_repo.get_item(db, item_id=item_id)
    if item is None or item.project_id != project.id:
        raise NotFound("No such item in this project.")
    leased = repo.live_leased_item_ids(db, project_id=project.id, now=utcnow())
    return ItemDetail(row=_rows(db, project, [item], leased, utcnow())[0],
                      responses=items_repo.list_responses(db, item_id=item.id),
                      labels=repo.labels_of(db, item_id=item.id))
