"""Queries for items, responses and import jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from app.models import ImportJob, Item, Project, Response
from app.models.items import ResponseSource


def in_queue_when(label_count: ColumnElement) -> ColumnElement[bool]:
    """What ``items.in_queue`` means: the item wants more human labels (fewer than the
    project's k), and neither an accepted AI label nor a gold answer took it out of the
    queue. In an UPDATE it reads the row's values before the update."""
    k = select(Project.overlap_k).where(Project.id == Item.project_id).scalar_subquery()
    return and_(label_count < k, ~Item.ai_accepted, ~Item.is_gold)


def refresh_in_queue(db: Session, *, where: ColumnElement[bool]) -> None:
    """Rewrite ``in_queue`` of the items ``where`` selects from their current values (after a
    change of k, of the AI route, of gold, or of labels restored by an import)."""
    db.execute(update(Item).where(where).values(in_queue=in_queue_when(Item.label_count))
               .execution_options(synchronize_session=False))


def existing_external_ids(db: Session, *, project_id: int, external_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(external_ids), 500):
        chunk = external_ids[start : start + 500]
        found.update(
            db.scalars(
                select(Item.external_id).where(
                    Item.project_id == project_id, Item.external_id.in_(chunk)
                )
            )
        )
    return found


def count_items(db: Session, *, project_id: int) -> int:
    return db.scalar(
        select(func.count()).select_from(Item).where(Item.project_id == project_id, Item.ready)
    ) or 0


def get_item(db: Session, *, item_id: int) -> Item | None:
    item = db.get(Item, item_id)
    return item if item is not None and item.ready else None


# Built once: the labeling hot path runs these with new parameters.
_RESPONSES = (select(Response).where(Response.item_id == bindparam("item_id"))
              .order_by(Response.position, Response.id))
_LOCK_ITEM = (select(Item).where(Item.id == bindparam("item_id"), Item.ready)
              .with_for_update(key_share=True))


def list_responses(db: Session, *, item_id: int) -> list[Response]:
    return list(db.scalars(_RESPONSES, {"item_id": item_id}))


def original_responses(db: Session, *, item_id: int) -> list[Response]:
    """The responses an item came with or was generated with: not the human edits."""
    return [r for r in list_responses(db, item_id=item_id)
            if r.source != ResponseSource.HUMAN_EDIT]


def lock_item(db: Session, *, item_id: int) -> Item | None:
    """Take the item's row lock (PostgreSQL; SQLite writers hold the whole database): every
    change to its slots, labels' count and consensus happens under it. It is FOR NO KEY
    UPDATE: writers of the item still queue, but rows that merely point at it (a judge run
    starting over 10k items, AI labels) pass their foreign-key checks without waiting."""
    return db.scalar(_LOCK_ITEM, {"item_id": item_id})


def responses_for_items(db: Session, *, item_ids: Iterable[int]) -> dict[int, list[Response]]:
    out: dict[int, list[Response]] = {}
    ids = list(item_ids)
    if not ids:
        return out
    for r in db.scalars(
        select(Response).where(Response.item_id.in_(ids)).order_by(Response.position, Response.id)
    ):
        out.setdefault(r.item_id, []).append(r)
    return out


def list_items_page(db: Session, *, project_id: int, after_id: int, limit: int) -> list[Item]:
    return list(
        db.scalars(
            select(Item)
            .where(Item.project_id == project_id, Item.ready, Item.id > after_id)
            .order_by(Item.id)
            .limit(limit)
        )
    )


def get_import_job(db: Session, *, job_id: int) -> ImportJob | None:
    return db.get(ImportJob, job_id)


def list_import_jobs(db: Session, *, project_id: int, limit: int = 10) -> list[ImportJob]:
    return list(
        db.scalars(
            select(ImportJob)
            .where(ImportJob.project_id == project_id)
            .order_by(ImportJob.id.desc())
            .limit(limit)
        )
    )


def count_job_items(db: Session, *, job_id: int) -> int:
    query = select(func.count()).select_from(Item).where(Item.import_job_id == job_id)
    return db.scalar(query) or 0


def delete_unfinished_job_items(db: Session, *, job_id: int) -> None:
    db.execute(delete(Item).where(Item.import_job_id == job_id, Item.ready.is_(False)))


def publish_job_items(db: Session, *, job_id: int) -> int:
    result = db.execute(
        update(Item).where(Item.import_job_id == job_id, Item.ready.is_(False)).values(ready=True)
    )
    return result.rowcount or 0
