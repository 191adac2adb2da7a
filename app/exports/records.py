"""Read decided items, with their responses, in batches of id ranges: memory stays flat however
large the project, and each batch is its own short transaction.

Threads read the next batches while the caller works on this one (``_fetch``), so the
database makes them while this one is written. Rows are read as the driver's plain tuples
(no ORM objects, no SQLAlchemy rows) and JSON columns as text parsed by orjson, which made
reading several times cheaper than ORM rows and the driver's ``json.loads``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, NamedTuple

import orjson
from sqlalchemy import CursorResult, Select, Text, cast, func, or_, select
from sqlalchemy.orm import Session

from app.core.db import get_engine, session_scope
from app.exports.background import ordered_map, read_ahead
from app.exports.filters import ExportFilters, LabelSource
from app.models import Item, ItemConsensus, ItemTag, Response, RuleSet
from app.models.consensus import ConsensusStatus

BATCH = 2500
# Batches read at once: PostgreSQL works on one in its own process while the other is parsed.
# SQLite works in this process, and two connections took twice the CPU per row of one.
READERS = {"postgresql": 2, "sqlite": 1}
RANGES_PER_QUERY = 8
FIRST_BATCH = 250  # a small first batch: the first rows go out sooner


class ExportResponse(NamedTuple):
    id: int
    text: str
    model_name: str | None
    source: str
    parent_id: int | None


@dataclass(slots=True)
class Record:
    """One decided item: its prompt, responses and consensus pairs."""

    item_id: int
    external_id: str
    prompt: Any
    source: str
    agreement: float | None
    confidence: float | None
    pairs: list[list[Any]]  # [chosen id, rejected id, p, margin]
    responses: dict[int, ExportResponse] = field(default_factory=dict)


@dataclass
class Tally:
    """What an export went through, for its manifest and the export page."""

    items: int = 0
    pairs: int = 0
    ties: int = 0
    awaiting_adjudication: int = 0
    filtered_out: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


def _conditions(project_id: int, filters: ExportFilters, rule_set_id: int | None, *,
                tag: bool = True) -> list:
    c = ItemConsensus
    cond = [c.project_id == project_id, c.source.in_([s.value for s in filters.sources])]
    if filters.min_agreement is not None:
        cond.append(or_(c.source != LabelSource.HUMAN,
                        c.agreement >= filters.min_agreement))
    if filters.min_confidence is not None:
        cond.append(or_(c.source != LabelSource.AI_ACCEPTED,
                        c.confidence >= filters.min_confidence))
    if filters.rule_set_version is not None:
        cond.append(c.rule_set_id == rule_set_id)
    if filters.since is not None:
        cond.append(c.decided_at >= _utc(filters.since))
    if filters.until is not None:
        cond.append(c.decided_at <= _utc(filters.until))
    if filters.round is not None:
        cond.append(c.item_id.in_(select(Item.id).where(Item.project_id == project_id,
                                                        Item.round == filters.round)))
    if filters.tag is not None and tag:
        cond.append(c.item_id.in_(tagged(project_id, filters.tag)))
    return cond


def tagged(project_id: int, tag: str) -> Select:
    """The ids of the project's items with the tag: a range of the item_tags index, not a
    read of every item's metadata (``app.items.tags`` writes it with the items)."""
    return select(ItemTag.item_id).where(ItemTag.project_id == project_id, ItemTag.tag == tag)


def _utc(value):  # noqa: ANN001, ANN202
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def rule_set_id_of(db: Session, *, project_id: int, version: int | None) -> int | None:
    if version is None:
        return None
    return db.scalar(select(RuleSet.id).where(RuleSet.project_id == project_id,
                                              RuleSet.version == version)) or -1


def count_candidates(db: Session, *, project_id: int, filters: ExportFilters) -> int:
    """Items the filters let through, for a progress bar."""
    rule_set_id = rule_set_id_of(db, project_id=project_id, version=filters.rule_set_version)
    return db.scalar(select(func.count()).select_from(ItemConsensus).where(
        *_conditions(project_id, filters, rule_set_id))) or 0


def left_out_by_tag(db: Session, *, project_id: int, filters: ExportFilters,
                    rule_set_id: int | None) -> int:
    """Decided items the other filters let through that lack the tag (0 without a tag)."""
    if filters.tag is None:
        return 0
    decided = select(func.count()).select_from(ItemConsensus).where(
        ItemConsensus.status == ConsensusStatus.DECIDED)
    every = db.scalar(decided.where(*_conditions(project_id, filters, rule_set_id, tag=False)))
    kept = db.scalar(decided.where(*_conditions(project_id, filters, rule_set_id)))
    return (every or 0) - (kept or 0)


def tally_statuses(db: Session, *, project_id: int, filters: ExportFilters, tally: Tally) -> None:
    """Ties and conflicts that the export leaves out, counted for the manifest."""
    rule_set_id = rule_set_id_of(db, project_id=project_id, version=filters.rule_set_version)
    rows = db.execute(select(ItemConsensus.status, func.count()).where(
        *_conditions(project_id, filters, rule_set_id)).group_by(ItemConsensus.status))
    for status, n in rows:
        if status == ConsensusStatus.TIE:
            tally.ties += n
        elif status in (ConsensusStatus.CONFLICT, ConsensusStatus.INTRANSITIVE):
            tally.awaiting_adjudication += n


def _json(text: str | None) -> Any:
    """A JSON column read as text; orjson is several times faster than the driver's json."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what only Python's json reads (NaN, huge integers)
        return json.loads(text)


def iter_records(*, project_id: int, filters: ExportFilters, tally: Tally | None = None,
                 batch: int = BATCH) -> Iterator[list[Record]]:
    """Batches of decided items in id order; each batch read in its own transaction."""
    tally = tally if tally is not None else Tally()
    with session_scope() as db:
        rule_set_id = rule_set_id_of(db, project_id=project_id,
                                     version=filters.rule_set_version)
        tally.filtered_out += left_out_by_tag(db, project_id=project_id, filters=filters,
                                              rule_set_id=rule_set_id)
    cond = _conditions(project_id, filters, rule_set_id)  # the tag filter too, in SQL
    # Only the database work is in the thread: turning rows into records there too would
    # make the two threads take turns at the GIL, which costs more than it saves.
    for items, responses in _fetch(project_id, cond, batch):
        records = [Record(item_id=r[0], source=r[1], agreement=r[2], confidence=r[3],
                          pairs=_json(r[4]), external_id=r[5], prompt=_json(r[6]))
                   for r in items]
        by_id = {r.item_id: r for r in records}
        for rid, item_id, text, model, source, parent in responses:
            if (rec := by_id.get(item_id)) is not None:
                rec.responses[rid] = ExportResponse(rid, text, model, source, parent)
        for r in records:
            tally.items += 1
            tally.by_source[r.source] = tally.by_source.get(r.source, 0) + len(r.pairs)
            tally.pairs += len(r.pairs)
        yield records


def _fetch(project_id: int, cond: list, batch: int, *,
           lean: bool = False) -> Iterator[tuple[list[tuple], list[tuple]]]:
    """Each batch's rows: decided items, then the responses of the items in its id range.

    Items: item_id, source, agreement, confidence, pairs, external_id, prompt (JSON as
    text); responses: id, item_id, text, model_name, source, parent_response_id. ``lean``
    reads only what the pair formats use: items' item_id, source, pairs, prompt and
    responses' id, item_id, text.

    A thread finds the batches' id ranges ahead of time (``_ranges``), and ``READERS``
    threads read that many batches at once, each in its own transaction: the database works
    on the next batch while this one is parsed and made into rows. Read one at a time from
    PostgreSQL, the reader of a 1M-pair snapshot waited on the server for half of its time,
    and the thread that makes the rows waited on the reader for 40% of its.
    """
    c = ItemConsensus
    if lean:
        item_columns = [c.item_id, c.source, cast(c.pairs, Text), cast(Item.prompt, Text)]
        response_columns = [Response.id, Response.item_id, Response.text]
    else:
        item_columns = [c.item_id, c.source, c.agreement, c.confidence, cast(c.pairs, Text),
                        Item.external_id, cast(Item.prompt, Text)]
        response_columns = [Response.id, Response.item_id, Response.text, Response.model_name,
                            Response.source, Response.parent_response_id]

    def read(bounds: tuple[int, int | None]) -> tuple[list[tuple], list[tuple]]:
        after, last = bounds
        upto = [] if last is None else [c.item_id <= last, Item.id <= last]
        with session_scope() as db:
            conn = db.connection()
            # The bound on items.id as well as item_consensus.item_id: PostgreSQL does not
            # carry a range across the join, and without it every batch reads the items
            # table from the start (quadratic in the project's size).
            items = _tuples(conn.execute(
                select(*item_columns)
                .join(Item, Item.id == c.item_id)
                .where(*cond, c.status == ConsensusStatus.DECIDED, c.item_id > after,
                       Item.id > after, *upto, Item.ready)
                .order_by(c.item_id)
            ))
            if not items:
                return items, []
            lo, hi = items[0][0], items[-1][0]
            # Ranges on both ids keep this an index range scan; an IN over the batch's items
            # let PostgreSQL choose to read every response of every project, each batch.
            # ``ready`` lets SQLite range over its (project_id, ready, id) index: without it
            # SQLite read the whole project's index entries for every batch.
            responses = _tuples(conn.execute(
                select(*response_columns)
                .join(Item, Item.id == Response.item_id)
                .where(Item.project_id == project_id, Item.ready, Item.id >= lo,
                       Item.id <= hi, Response.item_id >= lo, Response.item_id <= hi)
            ))
        return items, responses

    name = f"export-read-{project_id}"
    readers = READERS.get(get_engine().dialect.name, 1)
    ranges = read_ahead(_ranges(project_id, batch), depth=readers, name=f"{name}-ranges")
    for items, responses in ordered_map(read, ranges, workers=readers, name=name):
        if items:
            yield items, responses


def _ranges(project_id: int, batch: int) -> Iterator[tuple[int, int | None]]:
    """Id ranges ``(after, last]`` of ``batch`` decided items (the first few of ``FIRST_BATCH``:
    the first rows go out sooner), then ``(after, None)``: the rest. Counted over all the
    project's decided items (an index-only scan), so a range holds at most ``batch`` of the
    items the filters let through, and may hold none. ``RANGES_PER_QUERY`` at a time: a
    query per range cost about 0.5 us of CPU per row of a 1M-pair export."""
    c = ItemConsensus
    after, size = 0, min(batch, FIRST_BATCH)
    while True:
        n = func.row_number().over(order_by=c.item_id).label("n")
        window = (select(c.item_id, n)
                  .where(c.project_id == project_id, c.status == ConsensusStatus.DECIDED,
                         c.item_id > after)
                  .order_by(c.item_id).limit(size * RANGES_PER_QUERY).subquery())
        with session_scope() as db:
            ends = list(db.scalars(select(window.c.item_id)
                                   .where(window.c.n % size == 0).order_by(window.c.item_id)))
        for last in ends:
            yield after, last
            after = last
        if len(ends) < RANGES_PER_QUERY:
            yield after, None
            return
        size = batch


def _tuples(result: CursorResult) -> list[tuple]:
    """A result's rows as the driver's own tuples. SQLAlchemy's Row objects cost about as
    much again as the driver's work; the columns read here (integers, text, floats) need no
    conversion by SQLAlchemy on SQLite or PostgreSQL."""
    try:
        return result.cursor.fetchall()
    finally:
        result.close()
