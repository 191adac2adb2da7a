"""Item tags as rows of ``item_tags``, written in the same transaction as their items, so
the item list's tag filter is an index range (project, tag, item id) and not a scan of
metadata. What counts as a tag is app.exports.filters.item_tags, and only that."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from app.exports.filters import item_tags
from app.items import repository
from app.models import ItemTag

# The longest tag a filter may ask for (the list's and the export's); a longer one could
# never be asked for, and PostgreSQL refuses index entries over about 2.7 kB.
MAX_TAG_CHARS = 100


def indexed_tags(meta: Any) -> list[str]:
    """The item's tags that a filter can ask for, in order: a filter's tag is stripped,
    not empty, at most MAX_TAG_CHARS and without NUL, so other tags never match one."""
    if meta is not None and not isinstance(meta, dict):
        return []  # not metadata the app writes; item_tags would not read it either
    return sorted(t for t in item_tags(meta)
                  if t and len(t) <= MAX_TAG_CHARS and t == t.strip() and "\x00" not in t)


def tag_rows(items: Iterable[tuple[int, Any]]) -> list[tuple[int, str]]:
    """(item id, tag) for every tag of these (item id, metadata) pairs."""
    return [(item_id, tag) for item_id, meta in items for tag in indexed_tags(meta)]


def write_item_tags(db: Session, *, project_id: int, items: Iterable[tuple[int, Any]]) -> None:
    """Index the tags of new items, given as (item id, metadata): one bulk insert."""
    repository.insert_rows(db, table=ItemTag.__table__, columns=["item_id", "tag"],
                           rows=tag_rows(items), same={"project_id": project_id})
