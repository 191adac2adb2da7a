"""Queries for the labeling queue: leases, slots and labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session

from app.core.db import NO_OFFSET, ONE_ROW, memo
from app.items.repository import (
    LOCK_ITEM_KEYS,
    in_queue_when,
    lock_item_keys,
    original_responses,
    with_original_responses,
)
from app.models import Assignment, HumanLabel, Item, ProgressCount, Project, User
from app.models.labels import AssignmentStatus
from app.models.types import UTCDateTime


def _labels_on(item_id_col) -> Select:  # noqa: ANN001
    return (
        select(func.count())
        .select_from(HumanLabel)
        .where(HumanLabel.item_id == item_id_col)
        .scalar_subquery()
    )


# The labeling hot path's statements are built once and run with new parameters: composing
# a statement and computing its cache key anew on every call cost more than running it.
_ACTIVE_ASSIGNMENT = (
    select(Assignment)
    .where(
        Assignment.project_id == bindparam("project_id"),
        Assignment.user_id == bindparam("user_id"),
        Assignment.status == AssignmentStatus.ACTIVE,
    )
    .order_by(Assignment.id)
    .limit(ONE_ROW)
)
_ASSIGNMENT = select(Assignment).where(Assignment.item_id == bindparam("item_id"),
                                       Assignment.user_id == bindparam("user_id"))


def active_assignment(db: Session, *, project_id: int, user_id: int) -> Assignment | None:
    """The labeler's live-or-expired lease in the project (at most one is ACTIVE)."""
    if (project_id, user_id) in memo(db, "without_lease"):
        return None  # lease_ended: none, and no other can have been made since
    return db.scalar(_ACTIVE_ASSIGNMENT, {"project_id": project_id, "user_id": user_id})


def get_assignment(db: Session, *, item_id: int, user_id: int) -> Assignment | None:
    return db.scalar(_ASSIGNMENT, {"item_id": item_id, "user_id": user_id})


def lock_user_queue(db: Session, *, project_id: int, user_id: int) -> None:
    """Serialise one labeler's queue calls (two tabs, a double click) on PostgreSQL, until
    the transaction ends; a second call in the same transaction costs nothing.

    SQLite needs nothing: its writers hold the database lock from BEGIN IMMEDIATE.
    """
    if _queue_lock_to_take(db, project_id=project_id, user_id=user_id):
        db.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                   {"a": project_id, "b": user_id})
        memo(db, "queue_locks")[(project_id, user_id)] = True


def _queue_lock_to_take(db: Session, *, project_id: int, user_id: int) -> bool:
    """Whether the labeler's queue lock is still to be taken in this transaction."""
    return (db.get_bind().dialect.name == "postgresql"
            and (project_id, user_id) not in memo(db, "queue_locks"))


# A submit's first statement: the labeled item's row lock (only the columns the label needs:
# no JSON prompt to decode) and, on PostgreSQL, the labeler's queue lock for the next item
# that follows, one round trip for both. The queue lock comes first (it is taken as the row
# is read, before the row lock), as in next_task, which takes an item's lock after it.
_LOCK_ITEM_AND_QUEUE = LOCK_ITEM_KEYS.add_columns(
    func.pg_advisory_xact_lock(bindparam("project_id"), bindparam("user_id")))


def lock_item_and_queue(db: Session, *, item_id: int, project_id: int,
                        user_id: int) -> Row | None:
    """``items.lock_item_keys``, and ``lock_user_queue`` in the same round trip when the item
    exists (PostgreSQL). The row has the item's ``id``, ``project_id`` and ``is_gold``."""
    if not _queue_lock_to_take(db, project_id=project_id, user_id=user_id):
        return lock_item_keys(db, item_id=item_id)
    row = db.connection().execute(_LOCK_ITEM_AND_QUEUE, {
        "item_id": item_id, "project_id": project_id, "user_id": user_id}).first()
    if row is not None:
        memo(db, "queue_locks")[(project_id, user_id)] = True
    return row


def never_had(user_id) -> Any:  # noqa: ANN001
    """The labeler (``user_id``, a parameter or value) never had the item: no lease of theirs
    on it, ended or live. Checked per candidate row by a probe of the (item, labeler)
    unique index. The ``OFFSET 0`` keeps PostgreSQL from turning the NOT EXISTS into an anti
    join. Without statistics on assignments (autovacuum has not run yet, or is off), it
    planned that join as a scan of every assignment of every project at each call: 2 ms at
    10,000 assignments, and growing with the table, against 0.15 ms for the probes."""
    return ~exists(select(ONE_ROW).where(Assignment.item_id == Item.id,
                                         Assignment.user_id == user_id)
                   .limit(ONE_ROW).offset(NO_OFFSET))


def lease_ended(db: Session, *, project_id: int, user_id: int) -> None:
    """The labeler's lease in the project ended in this transaction, under the queue lock
    (or SQLite's write lock): they hold no other, since at most one is ACTIVE, and none can
    be made until the transaction ends. The next item needs no query to know it."""
    memo(db, "without_lease")[(project_id, user_id)] = True


def needs_recount(db: Session) -> bool:
    """Whether a row read by the candidate query may be stale under our lock (PostgreSQL)."""
    return db.get_bind().dialect.name == "postgresql"


# Its parameters are named apart from any column's: store_label runs it in a statement whose
# UPDATEs would take a parameter named as a column of theirs for a value to set.
_NEXT_CANDIDATE = (
    select(Item)
    .where(
        Item.project_id == bindparam("queue_project"),
        Item.ready,
        Item.in_queue,  # the queue index holds only these: finished items cost nothing
        ~Item.ai_accepted,  # the AI judge labeled it confidently: no human needed
        ~Item.is_gold,  # gold items come through next_gold_item, outside the k cap
        never_had(bindparam("queue_user")),
        Item.label_count + select(func.count()).select_from(Assignment).where(
            Assignment.item_id == Item.id, Assignment.status == AssignmentStatus.ACTIVE,
            Assignment.expires_at > bindparam("now", type_=UTCDateTime)).scalar_subquery()
        < bindparam("k"),
    )
    .order_by(Item.queue_rank, Item.id)  # what the judge was unsure of, first
    .limit(ONE_ROW)
    # SQLite's planner would rather range over label_count and sort every open item.
    .with_hint(Item, "INDEXED BY ix_items_human_queue", "sqlite")
)
_NEXT_CANDIDATE_LOCKED = _NEXT_CANDIDATE.with_for_update(skip_locked=True, of=Item,
                                                         key_share=True)


def next_candidate(db: Session, *, project_id: int, user_id: int, k: int, now: datetime,
                   exclude: list[int]) -> Item | None:
    """The first item with a free slot that this labeler never had, locked (PostgreSQL);
    the one ``store_label`` found, if it looked for it."""
    found = memo(db, "next_candidates")
    if not exclude and (project_id, user_id, k) in found:
        return found.pop((project_id, user_id, k))
    postgres = db.get_bind().dialect.name == "postgresql"
    query = _NEXT_CANDIDATE_LOCKED if postgres else _NEXT_CANDIDATE
    if exclude:
        query = query.where(Item.id.not_in(exclude))
    return db.scalar(query, {"queue_project": project_id, "queue_user": user_id, "k": k,
                             "now": now})


def _prefixed(model: type, columns: Any, prefix: str) -> list:
    """The ``model``'s columns taken from ``columns`` (a table's or subquery's ``.c``),
    labelled ``<prefix><column>``: a row beside others in one statement, read back by
    ``_detached``."""
    return [columns[prop.columns[0].name].label(f"{prefix}{prop.columns[0].name}")
            for prop in model.__mapper__.column_attrs]


def _detached(model: type, row: Row, prefix: str) -> Any:
    """A ``model`` outside the session (read-only) from a row's ``_prefixed`` columns; None
    when they are NULL (an outer join that found none)."""
    found = row._mapping
    if found[f"{prefix}id"] is None:
        return None
    return model(**{prop.key: found[f"{prefix}{prop.columns[0].name}"]
                    for prop in model.__mapper__.column_attrs})


# The candidate in a write's statement is read as a Core row and made into an Item outside the
# session. (Loading an ORM entity aliased to the subquery raised NoSuchColumnError now and
# then when threads first ran the statement at once.)
def _then_next_candidate(lead, *ctes):  # noqa: ANN001, ANN002, ANN202
    """One statement for a write and the labeler's next candidate: the columns of ``lead``
    (a CTE that writes one row), then the candidate's (``next_candidate``'s query, parameters
    ``queue_project``, ``queue_user``, ``k``, ``now``) as ``next_<column>``, NULL when there
    is none. ``ctes``: other writes of the statement."""
    candidate = _NEXT_CANDIDATE_LOCKED.subquery("next_item")
    statement = (select(*lead.c, *_prefixed(Item, candidate.c, "next_"))
                 .select_from(lead).outerjoin(candidate, true()))
    for cte in ctes:
        statement = statement.add_cte(cte)
    return statement


def _run_then_next(db: Session, statement, params: dict, *, project_id: int,  # noqa: ANN001
                   user_id: int, k: int, now: datetime) -> Row | None:
    """Run a ``_then_next_candidate`` statement: its row (None when the write wrote none).
    The candidate, an Item outside the session (read-only), or None, is kept for
    ``next_candidate``, which then answers without a query."""
    row = db.connection().execute(statement, {
        **params, "queue_project": project_id, "queue_user": user_id, "k": k,
        "now": now}).first()
    if row is not None:
        memo(db, "next_candidates")[(project_id, user_id, k)] = _detached(Item, row, "next_")
    return row


def next_gold_item(db: Session, *, project_id: int, user_id: int) -> Item | None:
    """A gold item this labeler has not had yet; every labeler gets each one once."""
    return db.scalar(
        select(Item)
        .where(Item.project_id == project_id, Item.ready, Item.is_gold,
               never_had(user_id))
        .order_by(Item.id)
        .limit(ONE_ROW)
    )


def _slots_taken(now, *others):  # noqa: ANN001, ANN002, ANN202
    """Labels on the item (parameter ``item_id``) plus its leases live at ``now``, of the
    leases that also meet ``others``."""
    item_id = bindparam("item_id")
    return _labels_on(item_id) + (
        select(func.count()).select_from(Assignment)
        .where(Assignment.item_id == item_id, Assignment.status == AssignmentStatus.ACTIVE,
               Assignment.expires_at > now, *others)
        .scalar_subquery())


# Built once: the hot path runs it with new parameters instead of composing it each call.
_USED_SLOTS = select(_slots_taken(bindparam("now", type_=UTCDateTime),
                                  Assignment.user_id != bindparam("except_user")))


def used_slots(db: Session, *, item_id: int, now: datetime, except_user: int | None = None) -> int:
    """Labels on the item plus live leases of others: a fresh statement, so a fresh snapshot."""
    return db.scalar(_USED_SLOTS, {"item_id": item_id, "now": now,
                                   "except_user": except_user or 0}) or 0


_items, _labels, _assignments = Item.__table__, HumanLabel.__table__, Assignment.__table__
# The hot path's writes are Core statements on the tables (_items, _labels, _assignments),
# built once and run on the session's connection: the ORM's flush of one object, and even its
# handling of an ORM-enabled INSERT or UPDATE (bulk-persistence bookkeeping), cost more than
# the statement.


def _recount_statement(plus: int = 0):  # noqa: ANN202
    """``plus``: labels stored by the same statement, which its snapshot does not hold."""
    labels = _labels_on(bindparam("counted_item"))
    if plus:
        labels = labels + plus
    return (update(_items).where(_items.c.id == bindparam("counted_item"))
            .values(label_count=labels, in_queue=in_queue_when(labels), consensus_stale=True))


# Recount, queue flag, consensus mark.
_RECOUNT = _recount_statement()


def recount_labels(db: Session, *, item_id: int) -> None:
    """Set the item's label count from its labels (one UPDATE; the value is recounted), its
    place in the human queue, and mark its consensus for recomputing."""
    db.connection().execute(_RECOUNT, {"counted_item": item_id})
    _counted(db, item_id=item_id)


def _counted(db: Session, *, item_id: int) -> None:
    """A Core statement recounted the item: if it is loaded, its counts are read again when
    asked."""
    loaded = db.identity_map.get(db.identity_key(Item, item_id))
    if loaded is not None:
        db.expire(loaded, ["label_count", "in_queue", "consensus_stale"])


def _ended(db: Session, *, assignment: Assignment) -> None:
    """The same for a lease a Core statement ended (``assignment``: loaded, or read as a
    row)."""
    loaded = db.identity_map.get(db.identity_key(Assignment, assignment.id))
    if loaded is not None:
        db.expire(loaded, ["status", "finished_at"])


_INSERT_LABEL = insert(_labels).returning(_labels.c.id)
_END_ASSIGNMENT = (update(_assignments).where(_assignments.c.id == bindparam("assignment_id"))
                   .values(status=bindparam("status"), finished_at=bindparam("now")))


def insert_label(db: Session, values: dict) -> int:
    """Store a label (the columns it has; the others take their defaults); its id."""
    db.flush()  # whatever the ORM holds (an edited response) goes first
    return db.connection().execute(_INSERT_LABEL, values).scalar_one()


def store_label(db: Session, values: dict, *, assignment: Assignment, now: datetime,
                next_k: int | None = None) -> int:
    """A submitted label: insert it, end its lease (submitted) and recount its item (see
    recount_labels), under the item's lock; the label's id.

    On PostgreSQL the three writes are one statement, a round trip instead of three: the
    INSERT and the lease's UPDATE as data-modifying WITH queries of the item's UPDATE. They
    all see the statement's snapshot, which does not hold the new label: the recount adds it.
    Given ``next_k`` (the project's k), the same statement finds and locks the labeler's next
    candidate (``next_candidate``, which then answers without a query): the snapshot may be
    stale for it as for any candidate, and the new lease recounts (``lease_item``).
    """
    if db.get_bind().dialect.name != "postgresql":
        label_id = insert_label(db, values)
        end_assignment(db, assignment=assignment, status=AssignmentStatus.SUBMITTED, now=now)
        recount_labels(db, item_id=values["item_id"])
        return label_id
    db.flush()  # whatever the ORM holds (an edited response) goes first
    key = (tuple(sorted(values)), next_k is not None)
    statement = _STORE_LABEL.get(key)
    if statement is None:
        statement = _STORE_LABEL.setdefault(key, _store_label_statement(*key))
    params = {**{f"label_{name}": value for name, value in values.items()},
              "ended_assignment": assignment.id, "ended_at": now,
              "counted_item": values["item_id"]}
    if next_k is None:
        label_id = db.connection().execute(statement, params).scalar_one()
    else:
        label_id = _run_then_next(db, statement, params, project_id=values["project_id"],
                                  user_id=values["user_id"], k=next_k, now=now).id
    _ended(db, assignment=assignment)
    _counted(db, item_id=values["item_id"])
    return label_id


# store_label's statement on PostgreSQL, for each set of label columns (the task types'),
# with the next candidate or without.
_STORE_LABEL: dict[tuple[tuple[str, ...], bool], Any] = {}


def _store_label_statement(columns: tuple[str, ...], then_next: bool):  # noqa: ANN202
    c = _labels.c
    label = (insert(_labels).values({name: bindparam(f"label_{name}", type_=c[name].type)
                                     for name in columns})
             .returning(c.id).cte("new_label"))
    ended = (update(_assignments)
             .where(_assignments.c.id == bindparam("ended_assignment"))
             .values(status=AssignmentStatus.SUBMITTED,
                     finished_at=bindparam("ended_at", type_=UTCDateTime))
             .returning(_assignments.c.id).cte("ended_lease"))
    if not then_next:
        return (_recount_statement(plus=1).add_cte(label).add_cte(ended)
                .returning(select(label.c.id).scalar_subquery()))
    counted = _recount_statement(plus=1).returning(_items.c.id).cte("counted_item")
    return _then_next_candidate(label, ended, counted)


def _insert_assignment(*, if_room: bool):  # noqa: ANN202
    """The lease's INSERT; ``if_room``: made only while the item's labels and others' live
    leases leave a slot, the recount and the insert in one statement, so one snapshot."""
    c = _assignments.c
    names = ["project_id", "item_id", "user_id", "status", "leased_at", "expires_at"]
    row = select(*(bindparam(name, type_=c[name].type) for name in names))
    if if_room:
        row = row.where(_slots_taken(bindparam("leased_at", type_=UTCDateTime))
                        < bindparam("k", type_=Integer))
    return insert(_assignments).from_select(names, row).returning(c.id.label("lease_id"))


# [if_room]: the lease alone (SQLite), and with the responses the page shows (PostgreSQL:
# data-modifying WITH query).
_INSERT_LEASE = {if_room: _insert_assignment(if_room=if_room) for if_room in (False, True)}
_LEASE_AND_RESPONSES = {
    if_room: with_original_responses(statement.cte("new_lease"))
    for if_room, statement in _INSERT_LEASE.items()}


def lease_item(db: Session, *, project_id: int, item_id: int, user_id: int, now: datetime,
               until: datetime, k: int | None = None) -> tuple[Assignment, list[Row]] | None:
    """A live lease of the item to the labeler, until ``until``, and the item's original
    responses (``items.original_responses``), one round trip for both on PostgreSQL. Given
    ``k``, only if the item's labels and others' live leases, counted afresh, leave a slot
    (else None)."""
    values = {"project_id": project_id, "item_id": item_id, "user_id": user_id,
              "status": AssignmentStatus.ACTIVE, "leased_at": now, "expires_at": until}
    memo(db, "without_lease").pop((project_id, user_id), None)  # they may hold this one
    params = values if k is None else {**values, "k": k}
    if db.get_bind().dialect.name == "postgresql":
        rows = db.connection().execute(_LEASE_AND_RESPONSES[k is not None], params).all()
        if not rows:
            return None
        lease_id, responses = rows[0].lease_id, [row for row in rows if row.id is not None]
    else:
        lease_id = db.connection().execute(_INSERT_LEASE[k is not None], params).scalar()
        if lease_id is None:
            return None
        responses = original_responses(db, item_id=item_id)
    # What the page shows of it; not in the session (nothing of it is changed later in
    # this request, and a query for it loads the row).
    return Assignment(id=lease_id, finished_at=None, **values), responses


_END_ASSIGNMENT_THEN_NEXT = _then_next_candidate(
    _END_ASSIGNMENT.returning(_assignments.c.id).cte("ended_lease"))


def end_assignment(db: Session, *, assignment: Assignment, status: str, now: datetime,
                   next_k: int | None = None) -> None:
    """The lease ends: submitted, skipped or expired. Given ``next_k`` (the project's k), the
    same statement finds the labeler's next candidate on PostgreSQL, as ``store_label``."""
    params = {"assignment_id": assignment.id, "status": status, "now": now}
    if next_k is not None and db.get_bind().dialect.name == "postgresql":
        _run_then_next(db, _END_ASSIGNMENT_THEN_NEXT, params, project_id=assignment.project_id,
                       user_id=assignment.user_id, k=next_k, now=now)
    else:
        db.connection().execute(_END_ASSIGNMENT, params)
    _ended(db, assignment=assignment)


def expire_active_leases(db: Session, *, user_id: int, now: datetime) -> int:
    """End the user's live leases in every project now; returns how many there were.

    The rows stay ACTIVE with ``expires_at = now``: others no longer count the slot, and the
    labeler, back within the lease, may keep the item if nobody filled it meanwhile. The
    status condition is rechecked under the row lock, so a submit that commits first wins.
    """
    return db.execute(
        update(Assignment)
        # Every project, spelled out: the (project, user, status) index then serves the update.
        .where(Assignment.project_id.in_(select(Project.id)), Assignment.user_id == user_id,
               Assignment.status == AssignmentStatus.ACTIVE, Assignment.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


_EARLIER_LABEL = (
    select(HumanLabel)
    .where(or_(HumanLabel.idempotency_key == bindparam("key"),
               and_(HumanLabel.item_id == bindparam("item_id"),
                    HumanLabel.user_id == bindparam("user_id"))))
    .limit(ONE_ROW)
)


# A submit's reads in one round trip: the labeler's assignment of the item; whether a label
# was already stored under the key or by the labeler on the item (a double submit); and the
# item's original responses, which the label is checked against (a row each).
_ASSIGNMENT_AND_EARLIER = with_original_responses(
    select(*_prefixed(Assignment, _assignments.c, "lease_"),
           _EARLIER_LABEL.with_only_columns(HumanLabel.id).scalar_subquery()
           .label("earlier_label_id"))
    .where(_assignments.c.item_id == bindparam("item_id"),
           _assignments.c.user_id == bindparam("user_id"))
    .subquery("lease"))


@dataclass(frozen=True)
class Submission:
    """What a submit finds on the item: the labeler's assignment, a label already stored
    under the key or by the labeler (a double submit), and the item's original responses."""

    assignment: Assignment | None
    earlier: HumanLabel | None
    responses: list[Row]


def submission(db: Session, *, item_id: int, user_id: int, idempotency_key: str) -> Submission:
    """One statement when the assignment exists. Its ``assignment`` is read-only, not in the
    session (the submit ends it with a Core statement)."""
    params = {"key": idempotency_key, "item_id": item_id, "user_id": user_id}
    db.flush()  # a Core read: whatever the ORM holds goes first, as a query's autoflush
    rows = db.connection().execute(_ASSIGNMENT_AND_EARLIER, params).all()
    if not rows:
        return Submission(None, db.scalar(_EARLIER_LABEL, params), [])
    first = rows[0]
    earlier_id = first.earlier_label_id
    return Submission(_detached(Assignment, first, "lease_"),
                      db.get(HumanLabel, earlier_id) if earlier_id is not None else None,
                      [row for row in rows if row.id is not None])


def item_status_counts(db: Session, *, project_id: int, k: int, now: datetime) -> dict[str, int]:
    """Items done (k labels), in progress (some labels or a live lease) and to do.

    Counted from each item's label_count (recounted from its labels under the item's lock),
    read from the (project, ready, label_count, id) index alone, plus the project's live
    leases (a handful): no join over the labels, no read of the items table.
    """
    counts = {"done": 0, "in_progress": 0, "todo": 0}
    for label_count, n in db.execute(
        select(Item.label_count, func.count())
        .where(Item.project_id == project_id, Item.ready)
        .group_by(Item.label_count)
    ):
        counts["done" if label_count >= k else "in_progress" if label_count > 0 else "todo"] += n
    leased_unlabeled = db.scalar(
        select(func.count(func.distinct(Assignment.item_id)))
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.project_id == project_id,
               Assignment.status == AssignmentStatus.ACTIVE,
               Assignment.expires_at > now, Item.ready, Item.label_count == 0)
    ) or 0
    counts["todo"] -= leased_unlabeled
    counts["in_progress"] += leased_unlabeled
    return counts


def labels_per_labeler(db: Session, *, project_id: int) -> list[tuple[User, int, float]]:
    """Each labeler's label count and mean seconds per item."""
    rows = db.execute(
        select(User, func.count(HumanLabel.id), func.avg(HumanLabel.time_spent_ms))
        .join(HumanLabel, HumanLabel.user_id == User.id)
        .where(HumanLabel.project_id == project_id)
        .group_by(User.id)
        .order_by(func.count(HumanLabel.id).desc())
    )
    return [(u, n, float(ms or 0) / 1000) for u, n, ms in rows]


# --------------------------------------------------------------------------- progress cache

def progress_count(db: Session, *, project_id: int) -> ProgressCount | None:
    """The project's last stored progress recount (big projects only)."""
    return db.get(ProgressCount, project_id)


def store_progress_count(db: Session, *, project_id: int, counted_at: datetime, items: int,
                         counts: dict) -> None:
    """Replace the project's stored recount; a recount claim on it ends."""
    from app.core.db import upsert

    upsert(db, ProgressCount, {"project_id": project_id, "counted_at": counted_at,
                               "items": items, "counts": counts,
                               "refresh_started_at": None}, keys=["project_id"])


def drop_progress_count(db: Session, *, project_id: int) -> None:
    db.execute(delete(ProgressCount).where(ProgressCount.project_id == project_id))


def claim_progress_refresh(db: Session, *, project_id: int, now: datetime,
                           taken_over_before: datetime) -> bool:
    """Whether this caller is the one to recount now: nobody else is, or whoever claimed it
    before ``taken_over_before`` is taken to have died."""
    return db.execute(
        update(ProgressCount)
        .where(ProgressCount.project_id == project_id,
               or_(ProgressCount.refresh_started_at.is_(None),
                   ProgressCount.refresh_started_at < taken_over_before))
        .values(refresh_started_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
