"""Queries for items, responses and import jobs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    Row,
    String,
    Table,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DBAPIError
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
    """Which of these external ids the project has: one statement with one parameter (a
    PostgreSQL array; a JSON list that SQLite's json_each unpacks), however many ids."""
    if not external_ids:
        return set()
    if db.get_bind().dialect.name == "postgresql":
        wanted = any_(bindparam("ids", list(external_ids), type_=ARRAY(String)))
        match = Item.external_id == wanted
    else:
        ids = bindparam("ids", orjson.dumps(list(external_ids)).decode())
        match = Item.external_id.in_(select(text("value")).select_from(func.json_each(ids)))
    return set(db.scalars(select(Item.external_id).where(Item.project_id == project_id, match)))


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


_responses = Response.__table__
# The original responses of the item ``item_id``, and their order.
_ORIGINAL_OF_ITEM = and_(_responses.c.item_id == bindparam("item_id"),
                         _responses.c.source != ResponseSource.HUMAN_EDIT)
_RESPONSE_ORDER = (_responses.c.position, _responses.c.id)
_ORIGINAL_RESPONSES = select(*_responses.c).where(_ORIGINAL_OF_ITEM).order_by(*_RESPONSE_ORDER)


def original_responses(db: Session, *, item_id: int) -> list[Row]:
    """The responses an item came with or was generated with, not the human edits, in
    order: rows with a Response's attributes, read-only (no ORM objects: the labeling page
    reads them for every item it shows)."""
    return list(db.connection().execute(_ORIGINAL_RESPONSES, {"item_id": item_id}))


def with_original_responses(lead: Any) -> Any:
    """A one-row ``lead`` (a CTE that writes, say) and the original responses of the item
    ``item_id`` (as ``original_responses``), in one statement: a row per response, the lead's
    columns first; one with NULL response columns when the item has none; no rows when the
    lead has none. Its column names must differ from a response's."""
    return (select(*lead.c, *_responses.c).select_from(lead)
            .outerjoin(_responses, _ORIGINAL_OF_ITEM).order_by(*_RESPONSE_ORDER))


def count_responses(db: Session, *, item_id: int) -> int:
    """How many responses the item has, human edits included (the next one's position)."""
    return db.scalar(select(func.count()).select_from(_responses)
                     .where(_responses.c.item_id == item_id)) or 0


# Parameter ``item_id``; labeling's submit adds its queue lock as a column.
LOCK_ITEM_KEYS = (
    select(Item.__table__.c.id, Item.__table__.c.project_id, Item.__table__.c.is_gold)
    .where(Item.__table__.c.id == bindparam("item_id"), Item.__table__.c.ready)
    .with_for_update(key_share=True)
)


def lock_item_keys(db: Session, *, item_id: int) -> Row | None:
    """``lock_item`` without loading the item: the row's ``id``, ``project_id`` and
    ``is_gold``, which is all a submitted label needs (its prompt and metadata, JSON to
    decode, are not read)."""
    return db.connection().execute(LOCK_ITEM_KEYS, {"item_id": item_id}).first()


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


def allocate_item_ids(db: Session, *, count: int) -> list[int]:
    """``count`` new item ids, in increasing order, for rows this transaction will insert.

    PostgreSQL draws them from the table's sequence (safe beside concurrent inserts).
    SQLite gives a new row the largest id plus one, so these are the ids it would choose:
    the caller holds the write lock (every write transaction starts BEGIN IMMEDIATE), and
    the primary key refuses a clash should it not.
    """
    if count <= 0:
        return []
    if db.get_bind().dialect.name == "postgresql":
        # One array, not a row an id: reading 20k rows back cost more than drawing them.
        return db.scalar(text(
            "SELECT array(SELECT nextval(pg_get_serial_sequence('items', 'id')) "
            "FROM generate_series(1, :n) ORDER BY 1)"), {"n": count})
    top = db.scalar(select(func.max(Item.id))) or 0
    return list(range(top + 1, top + 1 + count))


def json_bytes(value: Any) -> bytes:
    """A JSON column's value as the database takes it in a bulk insert."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # an integer over 64 bits, or a lone surrogate
        return json.dumps(value).encode()


def _copy_type(column_type: Any) -> str:
    """The PostgreSQL type a binary COPY sends a column's values as."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, DateTime) and column_type.timezone:
        return "timestamptz"
    for sa_type, name in ((JSONB, "jsonb"), (JSON, "json"), (Boolean, "bool"),
                          (BigInteger, "int8"), (Integer, "int4"), (DateTime, "timestamp"),
                          (String, "text")):
        if isinstance(column_type, sa_type):
            return name
    raise TypeError(f"no bulk insert for columns of type {column_type!r}")


def insert_rows(db: Session, *, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]], same: dict[str, Any] | None = None) -> None:
    """Insert many rows at the speed the database takes them: PostgreSQL's binary COPY,
    SQLite's executemany of one prepared statement; no ORM work per row.

    ``rows`` hold plain values (int, str, bool, None), and Python objects in JSON columns.
    ``same`` holds values every row shares (a timestamp, a project id), converted once by
    the column's type; a column in neither gets its Python-side scalar default, as an ORM
    insert would give it. Driver errors come back as SQLAlchemy's (an IntegrityError stays
    one), so callers handle them as they would any statement's.
    """
    if not rows:
        return
    conn = db.connection()
    dialect = conn.dialect
    shared = dict(same or {})
    shared.update({c.name: c.default.arg for c in table.columns
                   if c.name not in columns and c.name not in shared
                   and c.default is not None and c.default.is_scalar})
    tail = tuple(_driver_value(table.c[name], value, dialect) for name, value in shared.items())
    names = [*columns, *shared]
    quote = dialect.identifier_preparer.quote
    sql_names = ", ".join(quote(c) for c in names)
    if dialect.name != "postgresql":
        as_json = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
        if as_json:
            rows = [_with_json_text(row, as_json) for row in rows]
        marks = ", ".join("?" * len(names))
        conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({sql_names}) VALUES ({marks})",
                             [(*row, *tail) for row in rows] if tail else list(rows))
        return
    from psycopg.types.json import set_json_dumps  # here: SQLite's web process never loads it

    types = [_copy_type(table.c[c].type.dialect_impl(dialect)) for c in names]
    sql = f"COPY {quote(table.name)} ({sql_names}) FROM STDIN (FORMAT BINARY)"
    try:
        with conn.connection.driver_connection.cursor() as cur:
            set_json_dumps(json_bytes, context=cur)
            with cur.copy(sql) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row((*row, *tail) if tail else row)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc


def _driver_value(column: Any, value: Any, dialect: Any) -> Any:
    """A value as insert_rows hands it to the driver: through the column type's bind
    processing, but JSON as insert_rows writes it (an object for the COPY, text for SQLite)."""
    if isinstance(column.type, JSON):
        return value if dialect.name == "postgresql" else json_bytes(value).decode()
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process(value) if process is not None and value is not None else value


def _with_json_text(row: Sequence[Any], positions: list[int]) -> list[Any]:
    out = list(row)
    for i in positions:
        out[i] = json_bytes(out[i]).decode()
    return out
