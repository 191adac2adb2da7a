"""The labeling queue: lease the next item, take a label once, skip, let leases expire.

Every change to an item's slots happens under the item's row lock (PostgreSQL) or the
database write lock (SQLite), and slots are recounted from rows under that lock, so no
item gets more than k labels and no labeler gets an item twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Row
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Conflict, NotFound
from app.items import repository as items
from app.labeling import repository
from app.labeling.schemas import LabelIn
from app.models import AiLabel, Assignment, Item, Project, Response, Rule, User
from app.models.items import ResponseSource
from app.models.labels import AssignmentStatus
from app.models.projects import TaskType
from app.models.types import utcnow
from app.projects.service import get_rules

MAX_DAY_MS = 24 * 3600 * 1000
_draw = random.SystemRandom().random


@dataclass(frozen=True)
class Task:
    """What the labeling page shows: the leased item, its responses and the rules."""

    assignment: Assignment
    item: Item
    responses: list[Row]  # the original responses (items.original_responses)
    rules: list[Rule]
    # The judge's verdict, only when the admin turned suggestions on (labelers work blind).
    suggestion: AiLabel | None = None


def next_task(db: Session, *, project: Project, user: User) -> Task | None:
    """The labeler's current lease, or a new lease on the next item with a free slot."""
    now = utcnow()
    repository.lock_user_queue(db, project_id=project.id, user_id=user.id)
    lease = timedelta(minutes=project.lease_minutes)
    current = repository.active_assignment(db, project_id=project.id, user_id=user.id)
    while current is not None:
        if current.expires_at > now:
            return _task(db, project, current)
        # An expired lease of ours: keep it if the item still has room for us.
        locked = items.lock_item(db, item_id=current.item_id)
        if (locked is not None and locked.is_gold) or repository.used_slots(
                db, item_id=current.item_id, now=now, except_user=user.id) < project.overlap_k:
            current.leased_at, current.expires_at = now, now + lease
            db.flush()
            return _task(db, project, current)
        current.status, current.finished_at = AssignmentStatus.EXPIRED, now
        db.flush()
        current = repository.active_assignment(db, project_id=project.id, user_id=user.id)

    tried: list[int] = []
    while True:
        item = repository.next_candidate(db, project_id=project.id, user_id=user.id,
                                         k=project.overlap_k, now=now, exclude=tried)
        if item is None:
            return None
        if project.gold_rate > 0 and _draw() < project.gold_rate:
            # Unannounced: a gold item looks like any other, and comes only while there is
            # real work left, at the project's rate.
            item = repository.next_gold_item(db, project_id=project.id,
                                              user_id=user.id) or item
        # On PostgreSQL the candidate query may have read a snapshot older than our lock: the
        # lease is made only if a recount in its own statement still finds a slot. SQLite's
        # writer holds the whole database from BEGIN IMMEDIATE on.
        recount = not item.is_gold and repository.needs_recount(db)
        leased = repository.lease_item(
            db, project_id=project.id, item_id=item.id, user_id=user.id, now=now,
            until=now + lease, k=project.overlap_k if recount else None)
        if leased is None:
            tried.append(item.id)
            continue
        assignment, responses = leased
        return _task(db, project, assignment, item, responses)


def current_task(db: Session, *, project: Project, user: User) -> Task | None:
    """The labeler's live lease, without taking a new one (for a plain page view)."""
    current = repository.active_assignment(db, project_id=project.id, user_id=user.id)
    if current is None or current.expires_at <= utcnow():
        return None
    return _task(db, project, current)


def _task(db: Session, project: Project, assignment: Assignment, item: Item | None = None,
          originals: list[Row] | None = None) -> Task:
    item = item or items.get_item(db, item_id=assignment.item_id)
    if item is None:
        raise NotFound("That item is gone.")
    if originals is None:
        originals = items.original_responses(db, item_id=item.id)
    _, rules = get_rules(db, project_id=project.id, current=project)
    return Task(assignment=assignment, item=item, responses=originals, rules=rules,
                suggestion=_suggestion(db, project=project, item_id=item.id))


def _suggestion(db: Session, *, project: Project, item_id: int) -> AiLabel | None:
    from app.judging import repository as judging

    if project.shows_suggestions is False:  # read with the project: labelers work blind
        return None
    return judging.shown_suggestion(db, project_id=project.id, item_id=item_id)


def submit_label(db: Session, *, project: Project, user: User, data: LabelIn,
                 then_next: bool = False) -> int:
    """Store one label and return its id; a repeated submit (same key, or same item again)
    stores nothing and returns the first one's. ``then_next``: ``next_task`` follows in the
    transaction (PostgreSQL looks for its candidate as it stores the label)."""
    # The item's lock, and the labeler's queue lock for the next item that follows.
    item = repository.lock_item_and_queue(db, item_id=data.item_id, project_id=project.id,
                                          user_id=user.id)
    if item is None or item.project_id != project.id:
        raise NotFound("No such item in this project.")
    found = repository.submission(db, item_id=item.id, user_id=user.id,
                                  idempotency_key=data.idempotency_key)
    assignment, earlier, originals = found.assignment, found.earlier, found.responses
    if earlier is not None:
        if earlier.user_id != user.id:
            raise Conflict("This submission key belongs to someone else.")
        return earlier.id

    now = utcnow()
    if assignment is None or assignment.status not in (AssignmentStatus.ACTIVE,):
        raise Conflict("This item is not assigned to you (it was skipped or reassigned). "
                       "Take the next item.")
    # A live lease holds our slot (others count it); only an expired one may have lost it.
    if (not item.is_gold and assignment.expires_at <= now
            and repository.used_slots(db, item_id=item.id, now=now,
                                      except_user=user.id) >= project.overlap_k):
        raise Conflict("Your lease on this item expired and other labelers have filled it. "
                       "Your label was not stored; take the next item.")

    _, rules = get_rules(db, project_id=project.id, current=project)
    values = {
        "project_id": project.id, "item_id": item.id, "user_id": user.id,
        "assignment_id": assignment.id, "rule_set_id": rules[0].rule_set_id if rules else None,
        "idempotency_key": data.idempotency_key, "task_type": project.task_type,
        "rule_violations": _violations(data, originals, rules),
        "rationale": data.rationale.strip(),
        "time_spent_ms": _time_spent(data, assignment, now), "created_at": now,
    }
    if project.task_type == TaskType.PAIRWISE:
        values |= _pairwise(data, originals)
    elif project.task_type == TaskType.RANKING:
        values |= _ranking(data, originals)
    else:
        values |= _rate_and_edit(db, item.id, data, originals, user)
    # Plain statements, not the ORM's unit of work: on the hot path its flush cost more
    # than the statements it sends.
    label_id = repository.store_label(db, values, assignment=assignment, now=now,
                                      next_k=project.overlap_k if then_next else None)
    repository.lease_ended(db, project_id=project.id, user_id=user.id)
    return label_id


def skip_item(db: Session, *, project: Project, user: User, item_id: int,
              then_next: bool = False) -> None:
    """Hand the item back to the queue; this labeler will not get it again. ``then_next``:
    as for ``submit_label``."""
    # The queue lock first (the next item follows under it): the lease is then read as it is.
    repository.lock_user_queue(db, project_id=project.id, user_id=user.id)
    assignment = repository.get_assignment(db, item_id=item_id, user_id=user.id)
    if assignment is None or assignment.project_id != project.id:
        raise NotFound("That item is not assigned to you.")
    if assignment.status == AssignmentStatus.ACTIVE:
        repository.end_assignment(db, assignment=assignment, status=AssignmentStatus.SKIPPED,
                                  now=utcnow(), next_k=project.overlap_k if then_next else None)
        repository.lease_ended(db, project_id=project.id, user_id=user.id)


def release_leases(db: Session, *, user_id: int) -> int:
    """A labeler who logs out holds no item: their live leases end now (returns how many).

    Without this an item stays blocked for ``lease_minutes`` after its labeler left. A tab
    closed without logging out still frees its item when the lease runs out.
    """
    return repository.expire_active_leases(db, user_id=user_id, now=utcnow())


def _time_spent(data: LabelIn, assignment: Assignment, now) -> int:  # noqa: ANN001
    if data.time_spent_ms is not None and 0 < data.time_spent_ms < MAX_DAY_MS:
        return data.time_spent_ms
    return min(MAX_DAY_MS, int((now - assignment.leased_at).total_seconds() * 1000))


def _violations(data: LabelIn, originals: list[Row],
                rules: list[Rule]) -> dict[str, list[str]]:
    ids = {r.id for r in originals}
    keys = {r.key for r in rules}
    out: dict[str, list[str]] = {}
    for response_id, broken in data.rule_violations.items():
        if response_id not in ids:
            raise BadRequest(f"Response {response_id} is not part of this item.")
        unknown = sorted(set(broken) - keys)
        if unknown:
            raise BadRequest(f"Unknown rule ids: {', '.join(unknown)}.")
        if broken:
            out[str(response_id)] = sorted(set(broken), key=[r.key for r in rules].index)
    return out


def _pairwise(data: LabelIn, originals: list[Row]) -> dict:
    if data.choice is None:
        raise BadRequest("Choose A, B or tie.")
    if data.choice != "tie" and data.strength is None:
        raise BadRequest("Say how much better: slightly or clearly.")
    return {"response_a_id": originals[0].id, "response_b_id": originals[1].id,
            "choice": data.choice, "strength": None if data.choice == "tie" else data.strength}


def _ranking(data: LabelIn, originals: list[Row]) -> dict:
    ids = [r.id for r in originals]
    if not data.ranking or sorted(data.ranking) != sorted(ids):
        raise BadRequest("A ranking must order every response of the item exactly once.")
    return {"ranking": list(data.ranking)}


def _rate_and_edit(db: Session, item_id: int, data: LabelIn, originals: list[Row],
                   user: User) -> dict:
    ids = {r.id for r in originals}
    ratings = data.ratings or {}
    if set(ratings) != ids:
        raise BadRequest("Rate every response from 1 to 7.")
    if any(not 1 <= v <= 7 for v in ratings.values()):
        raise BadRequest("Ratings go from 1 to 7.")
    out: dict = {"ratings": {str(k): v for k, v in ratings.items()}}
    if data.edit_response_id is None or data.edit_text is None:
        return out
    parent = next((r for r in originals if r.id == data.edit_response_id), None)
    if parent is None:
        raise BadRequest("The edited response is not part of this item.")
    text = data.edit_text.strip()
    if not text or text == parent.text.strip():
        return out  # nothing was changed: no edit to store
    edited = Response(item_id=item_id, position=items.count_responses(db, item_id=item_id),
                      text=text, model_name=None, source=ResponseSource.HUMAN_EDIT,
                      parent_response_id=parent.id, created_by_id=user.id)
    db.add(edited)
    db.flush()
    return out | {"edited_response_id": edited.id}


@dataclass(frozen=True)
class LabelerStat:
    """A labeler as the progress table shows them (plain values: kept across requests)."""

    name: str
    email: str


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    in_progress: int
    todo: int
    labelers: list[tuple[LabelerStat, int, float]]
    # When a big project's numbers were counted (app.labeling.progress_cache); None: now.
    as_of: datetime | None = None

    @property
    def percent_done(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def status_counts(db: Session, *, project: Project) -> dict[str, int]:
    """Items done, in progress and to do (see project_progress for how fresh)."""
    p = project_progress(db, project=project)
    return {"done": p.done, "in_progress": p.in_progress, "todo": p.todo}


def project_progress(db: Session, *, project: Project) -> Progress:
    """The project's progress, recounted from rows: on every view for a project of up to
    20k items, at most every 10 s for all web processes above that
    (app.labeling.progress_cache)."""
    from app.core.db import session_scope
    from app.labeling import progress_cache

    project_id, k = project.id, project.overlap_k

    def count(session: Session) -> tuple[dict, int]:
        counts = repository.item_status_counts(session, project_id=project_id, k=k,
                                               now=utcnow())
        labelers = [[u.name, u.email, n, secs] for u, n, secs
                    in repository.labels_per_labeler(session, project_id=project_id)]
        return {**counts, "labelers": labelers}, sum(counts.values())

    def in_own_session() -> tuple[dict, int]:
        with session_scope() as session:
            return count(session)

    counts, as_of = progress_cache.cached(db, project_id, lambda: count(db), in_own_session)
    return Progress(total=counts["done"] + counts["in_progress"] + counts["todo"],
                    done=counts["done"], in_progress=counts["in_progress"],
                    todo=counts["todo"], as_of=as_of,
                    labelers=[(LabelerStat(name=name, email=email), n, secs)
                              for name, email, n, secs in counts["labelers"]])
