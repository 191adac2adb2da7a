"""Queries for judge configurations, runs, their items and AI labels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.core.db import ONE_ROW
from app.items import repository as items
from app.models import AiLabel, HumanLabel, Item, JudgeCacheEntry, JudgeConfig, JudgeRun
from app.models import JudgeRunItem as RunItem
from app.models.judging import RunItemStatus

_CONFIG = select(JudgeConfig).where(JudgeConfig.project_id == bindparam("project_id"))


def get_config(db: Session, *, project_id: int) -> JudgeConfig | None:
    return db.scalar(_CONFIG, {"project_id": project_id})


def preview_item_id(db: Session, *, project_id: int, external_id: str = "") -> int | None:
    query = select(Item.id).where(Item.project_id == project_id, Item.ready)
    if external_id:
        query = query.where(Item.external_id == external_id)
    return db.scalar(query.order_by(Item.id).limit(ONE_ROW))


def get_run(db: Session, *, run_id: int) -> JudgeRun | None:
    return db.get(JudgeRun, run_id)


def list_runs(db: Session, *, project_id: int, limit: int = 20) -> list[JudgeRun]:
    return list(db.scalars(select(JudgeRun).where(JudgeRun.project_id == project_id)
                           .order_by(JudgeRun.id.desc()).limit(limit)))


def select_item_ids(db: Session, *, project_id: int, mode: str,
                    external_id_prefix: str = "") -> list[int]:
    """Items for a run: all, those no human has labeled, or by external-id prefix."""
    query = select(Item.id).where(Item.project_id == project_id, Item.ready)
    if mode == "unlabeled":
        query = query.where(~select(HumanLabel.id).where(HumanLabel.item_id == Item.id).exists())
    if external_id_prefix:
        query = query.where(Item.external_id.startswith(external_id_prefix, autoescape=True))
    return list(db.scalars(query.order_by(Item.id)))


def pending_item_ids(db: Session, *, run_id: int, stale_before: datetime) -> list[int]:
    """Items not yet judged: pending, or claimed by a worker that has gone quiet."""
    return list(db.scalars(
        select(RunItem.item_id).where(
            RunItem.run_id == run_id,
            (RunItem.status == RunItemStatus.PENDING)
            | ((RunItem.status == RunItemStatus.RUNNING) & (RunItem.claimed_at < stale_before)),
        ).order_by(RunItem.item_id)))


def stale_items(db: Session, *, stale_before: datetime) -> list[tuple[int, list[int]]]:
    rows = db.execute(
        select(RunItem.run_id, RunItem.item_id)
        .join(JudgeRun, JudgeRun.id == RunItem.run_id)
        .where(JudgeRun.status == "running", RunItem.status == RunItemStatus.RUNNING,
               RunItem.claimed_at < stale_before)
        .order_by(RunItem.run_id, RunItem.item_id)
    ).all()
    by_run: dict[int, list[int]] = {}
    for run_id, item_id in rows:
        by_run.setdefault(run_id, []).append(item_id)
    return list(by_run.items())


def stalled_run_ids(db: Session, *, quiet_before: datetime) -> list[int]:
    """Queued or running runs with pending items in which nothing has happened since
    ``quiet_before``: their queued messages were lost (a broker restarted without its data,
    or a send failed after the commit), so no worker will ever claim those items."""
    activity = (select(RunItem.id).where(
        RunItem.run_id == JudgeRun.id,
        (RunItem.claimed_at >= quiet_before) | (RunItem.finished_at >= quiet_before)))
    pending = select(RunItem.id).where(RunItem.run_id == JudgeRun.id,
                                       RunItem.status == RunItemStatus.PENDING)
    return list(db.scalars(
        select(JudgeRun.id).where(
            JudgeRun.status.in_(["queued", "running"]),
            func.coalesce(JudgeRun.started_at, JudgeRun.created_at) < quiet_before,
            pending.exists(), ~activity.exists())
        .order_by(JudgeRun.id)))


def hand_out_pending(db: Session, *, run_id: int, now: datetime,
                     quiet_before: datetime) -> list[int]:
    """Stamp the run's pending items as handed out now and return them. A pending item's
    ``claimed_at`` is when it was last handed out, so a second watchdog, or the next round
    of this one, leaves them alone while the new messages wait in the queue."""
    rows = db.execute(
        update(RunItem)
        .where(RunItem.run_id == run_id, RunItem.status == RunItemStatus.PENDING,
               RunItem.claimed_at.is_(None) | (RunItem.claimed_at < quiet_before))
        .values(claimed_at=now)
        .returning(RunItem.item_id))
    return sorted(r[0] for r in rows)


def hand_back(db: Session, *, run_id: int, item_ids: list[int], now: datetime) -> None:
    """Running items whose worker died go back to pending, stamped as handed out now."""
    db.execute(update(RunItem)
               .where(RunItem.run_id == run_id, RunItem.item_id.in_(item_ids),
                      RunItem.status == RunItemStatus.RUNNING)
               .values(status=RunItemStatus.PENDING, claimed_at=now))


def claim_items(db: Session, *, run_id: int, item_ids: list[int], now: datetime,
                stale_before: datetime) -> list[int]:
    """Conditionally mark items running; returns those this caller got."""
    rows = db.execute(
        update(RunItem)
        .where(
            RunItem.run_id == run_id,
            RunItem.item_id.in_(item_ids),
            (RunItem.status == RunItemStatus.PENDING)
            | ((RunItem.status == RunItemStatus.RUNNING) & (RunItem.claimed_at < stale_before)),
        )
        .values(status=RunItemStatus.RUNNING, claimed_at=now, attempts=RunItem.attempts + 1)
        .returning(RunItem.item_id)
    )
    return sorted(r[0] for r in rows)


def set_items(db: Session, *, run_id: int, item_ids: list[int], status: str,
              error: str | None = None, now: datetime | None = None) -> None:
    if item_ids:
        db.execute(update(RunItem)
                   .where(RunItem.run_id == run_id, RunItem.item_id.in_(item_ids),
                          RunItem.status == RunItemStatus.RUNNING)
                   .values(status=status, error=error, finished_at=now))


def status_counts(db: Session, *, run_id: int) -> dict[str, int]:
    rows = db.execute(select(RunItem.status, func.count()).where(RunItem.run_id == run_id)
                      .group_by(RunItem.status))
    counts = {s.value: 0 for s in RunItemStatus}
    counts.update({s: n for s, n in rows})
    return counts


def label_totals(db: Session, *, run_id: int) -> dict[str, int]:
    row = db.execute(select(
        func.count(AiLabel.id), func.coalesce(func.sum(AiLabel.prompt_tokens), 0),
        func.coalesce(func.sum(AiLabel.completion_tokens), 0),
        func.count(AiLabel.id).filter(AiLabel.consistent),
    ).where(AiLabel.run_id == run_id)).one()
    return {"labels": row[0], "prompt_tokens": int(row[1]), "completion_tokens": int(row[2]),
            "consistent": int(row[3])}


def route_counts(db: Session, *, run_id: int) -> dict[str, int]:
    rows = db.execute(select(AiLabel.route, func.count()).where(AiLabel.run_id == run_id)
                      .group_by(AiLabel.route))
    return {r: n for r, n in rows}


def failures(db: Session, *, run_id: int, limit: int = 20) -> list[RunItem]:
    return list(db.scalars(select(RunItem).where(RunItem.run_id == run_id,
                                                 RunItem.status == RunItemStatus.FAILED)
                           .order_by(RunItem.item_id).limit(limit)))


def cached(db: Session, *, keys: list[str]) -> dict[str, dict]:
    if not keys:
        return {}
    return {e.key: e.value for e in
            db.scalars(select(JudgeCacheEntry).where(JudgeCacheEntry.key.in_(keys)))}


def judged_item_ids(db: Session, *, run_id: int, item_ids: list[int]) -> set[int]:
    """Those of these items that already have their AI label in this run."""
    return set(db.scalars(select(AiLabel.item_id).where(AiLabel.run_id == run_id,
                                                        AiLabel.item_id.in_(item_ids))))


# The labeling page's one question to the judge's tables, one round trip whether the answer
# is "suggestions are off" (the usual case) or the label itself.
_SUGGESTION = (
    select(AiLabel)
    .where(AiLabel.item_id == bindparam("item_id"),
           select(JudgeConfig.id).where(JudgeConfig.project_id == bindparam("project_id"),
                                        JudgeConfig.show_suggestions).exists())
    .order_by(AiLabel.id.desc())
    .limit(ONE_ROW)
)


def shown_suggestion(db: Session, *, project_id: int, item_id: int) -> AiLabel | None:
    """The item's latest AI label, if the project's admin shows labelers the judge's
    suggestions (they label blind otherwise)."""
    return db.scalar(_SUGGESTION, {"project_id": project_id, "item_id": item_id})


def latest_ai_label(db: Session, *, item_id: int) -> AiLabel | None:
    return db.scalar(select(AiLabel).where(AiLabel.item_id == item_id)
                     .order_by(AiLabel.id.desc()).limit(ONE_ROW))


def set_item_routing(db: Session, *, item_id: int, route: str) -> None:
    """The item's queue place follows its latest AI label."""
    db.execute(update(Item).where(Item.id == item_id).values(
        ai_accepted=route in ("accepted", "review"),
        queue_rank=0 if route == "human" else 1, consensus_stale=True))
    items.refresh_in_queue(db, where=Item.id == item_id)
