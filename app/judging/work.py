"""The judging work Celery tasks run: dispatch a run, judge batches, recover from dead
workers, answer previews. Every step is idempotent: items are claimed with a conditional
UPDATE and AI labels are written once per (run, item)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.core.db import insert_ignore, session_scope
from app.core.errors import BadRequest, NotFound
from app.items import repository as items_repo
from app.judging import repository
from app.judging.providers.base import Provider
from app.judging.verdicts import ItemFailed, ItemPlan, ask, finish_item, judge_item, plan_item
from app.models import AiLabel, JudgePreview, JudgeRun
from app.models import JudgeRunItem as RunItem
from app.models.items import ResponseSource
from app.models.judging import RunItemStatus, RunStatus
from app.models.types import utcnow
from app.projects.service import get_rules

DISPATCH_CHUNK = 8


def _claim_stale() -> timedelta:
    from app.core.config import get_settings

    return timedelta(seconds=get_settings().judge_claim_stale_s)


def dispatch(*, run_id: int) -> list[list[int]]:
    """Mark the run running and return its unfinished items in batches to queue."""
    now = utcnow()
    with session_scope(write=True) as db:
        claimed = db.execute(
            update(JudgeRun).where(JudgeRun.id == run_id,
                                   JudgeRun.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))
            .values(status=RunStatus.RUNNING, started_at=now)).rowcount
        if not claimed:
            return []
        run = repository.get_run(db, run_id=run_id)
        assert run is not None
        size = max(1, int(run.config.get("batch_size", DISPATCH_CHUNK)))
        todo = repository.pending_item_ids(db, run_id=run_id,
                                           stale_before=now - _claim_stale())
        if not todo:
            _finish_if_done(db, run_id)
            return []
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def judge_batch(*, run_id: int, item_ids: list[int], provider: Provider | None = None) -> None:
    """Judge these items of the run; idempotent. Raises TransientError to be retried.

    The questions of all the batch's items go to the provider together, so a local model
    scores them in a few padded forward passes."""
    from app.judging.providers import build_provider
    from app.judging.providers.base import TransientError

    now = utcnow()
    with session_scope(write=True) as db:
        run = repository.get_run(db, run_id=run_id)
        if run is None or run.status != RunStatus.RUNNING:
            return
        mine = repository.claim_items(db, run_id=run_id, item_ids=item_ids, now=now,
                                      stale_before=now - _claim_stale())
        config, project_id, rule_set_id = run.config, run.project_id, run.rule_set_id
        work = {i: item_work(db, item_id=i, project_id=project_id) for i in mine}
        judged = repository.judged_item_ids(db, run_id=run_id, item_ids=mine)
    if not mine:
        return
    todo = [i for i in mine if i not in judged]
    plans: list[ItemPlan] = []
    for item_id in todo:
        task_type, prompt, responses, rules = work[item_id]
        try:
            plans.append(plan_item(config, item_id=item_id, task_type=task_type,
                                   prompt=prompt, responses=responses, rules=rules))
        except BadRequest as exc:  # the template cannot be rendered for this item
            _fail(run_id, [item_id], exc.message)
    provider = provider or build_provider(config)
    try:
        answers = ask(provider, [q for plan in plans for q in plan.questions])
    except TransientError:
        _release(run_id, [p.item_id for p in plans])
        raise
    if _cancelled(run_id):
        _release(run_id, [p.item_id for p in plans])
        return
    start = 0
    for plan in plans:
        mine_answers = answers[start : start + len(plan.questions)]
        start += len(plan.questions)
        try:
            label = finish_item(plan, mine_answers, config, run_id=run_id,
                                project_id=project_id, rule_set_id=rule_set_id)
        except ItemFailed as exc:
            _fail(run_id, [plan.item_id], str(exc))
            continue
        with session_scope(write=True) as db:
            insert_ignore(db, AiLabel, [label], keys=["run_id", "item_id"])
            repository.set_item_routing(db, item_id=plan.item_id, route=label["route"])
            repository.set_items(db, run_id=run_id, item_ids=[plan.item_id],
                                 status=RunItemStatus.DONE, now=utcnow())
    with session_scope(write=True) as db:
        repository.set_items(db, run_id=run_id, item_ids=[i for i in mine if i not in todo],
                             status=RunItemStatus.DONE, now=utcnow())
        _finish_if_done(db, run_id)


def fail_batch(*, run_id: int, item_ids: list[int], reason: str) -> None:
    """Give up on these items after the last retry, with the reason."""
    now = utcnow()
    with session_scope(write=True) as db:
        db.execute(update(RunItem)
                   .where(RunItem.run_id == run_id, RunItem.item_id.in_(item_ids),
                          RunItem.status.in_([RunItemStatus.PENDING, RunItemStatus.RUNNING]))
                   .values(status=RunItemStatus.FAILED, error=reason[:2000], finished_at=now))
        _finish_if_done(db, run_id)


def item_work(db: Session, *, item_id: int, project_id: int) -> tuple:
    from app.projects.repository import get_project

    item = items_repo.get_item(db, item_id=item_id)
    project = get_project(db, project_id=project_id)
    if item is None or project is None:
        raise NotFound("item gone")
    responses = [(r.id, r.text) for r in items_repo.list_responses(db, item_id=item_id)
                 if r.source != ResponseSource.HUMAN_EDIT]
    _, rules = get_rules(db, project_id=project_id)
    return (project.task_type, item.prompt, responses,
            [{"id": r.key, "text": r.text, "severity": r.severity} for r in rules])


def _cancelled(run_id: int) -> bool:
    with session_scope() as db:
        run = repository.get_run(db, run_id=run_id)
        return run is None or run.status != RunStatus.RUNNING


def _release(run_id: int, item_ids: list[int]) -> None:
    with session_scope(write=True) as db:
        repository.set_items(db, run_id=run_id, item_ids=item_ids, status=RunItemStatus.PENDING)


def _fail(run_id: int, item_ids: list[int], reason: str) -> None:
    with session_scope(write=True) as db:
        repository.set_items(db, run_id=run_id, item_ids=item_ids, status=RunItemStatus.FAILED,
                             error=reason[:2000], now=utcnow())


def _finish_if_done(db: Session, run_id: int) -> None:
    counts = repository.status_counts(db, run_id=run_id)
    if counts["pending"] or counts["running"]:
        return
    db.execute(update(JudgeRun).where(JudgeRun.id == run_id,
                                      JudgeRun.status == RunStatus.RUNNING)
               .values(status=RunStatus.SUCCEEDED, finished_at=utcnow()))



def run_preview(*, preview_id: int) -> None:
    """Body of the ``judging.preview`` task."""
    from app.judging.providers import build_provider
    from app.judging.providers.base import TransientError

    with session_scope(write=True) as db:
        claimed = db.execute(update(JudgePreview)
                             .where(JudgePreview.id == preview_id,
                                    JudgePreview.status == RunStatus.QUEUED)
                             .values(status=RunStatus.RUNNING)).rowcount
        if not claimed:
            return
        preview = db.get(JudgePreview, preview_id)
        assert preview is not None
        config, item_id, project_id = preview.config, preview.item_id, preview.project_id
        task_type, prompt, responses, rules = item_work(db, item_id=item_id,
                                                         project_id=project_id)
    try:
        label = judge_item(build_provider(config), config, run_id=0, item_id=item_id,
                           project_id=project_id, rule_set_id=None, task_type=task_type,
                           prompt=prompt, responses=responses, rules=rules)
        status, result, error = RunStatus.SUCCEEDED, _jsonable(label), None
    except (TransientError, ItemFailed, BadRequest, ValueError, RuntimeError) as exc:
        status, result, error = RunStatus.FAILED, None, str(getattr(exc, "message", exc))
    with session_scope(write=True) as db:
        db.execute(update(JudgePreview).where(JudgePreview.id == preview_id)
                   .values(status=status, result=result, error=error))


def _jsonable(label: dict) -> dict:
    return {k: v for k, v in label.items() if k != "created_at"}


def recover_stale() -> list[tuple[int, list[int]]]:
    """Items of running runs whose claim went stale (their worker died): hand them out again.

    Returns (run id, item ids) batches to queue. A late redelivery of the dead worker's task
    finds them done and does nothing, so recovering twice is harmless."""
    now = utcnow()
    out: list[tuple[int, list[int]]] = []
    with session_scope(write=True) as db:
        for run_id, item_ids in repository.stale_items(db, stale_before=now - _claim_stale()):
            repository.hand_back(db, run_id=run_id, item_ids=item_ids, now=now)
            out.append((run_id, item_ids))
    return out


def recover_stalled() -> list[tuple[int, list[int]]]:
    """Pending items of runs that have been quiet for the claim timeout: queue them again.

    With a Redis broker that keeps no data, a restart loses every queued batch (and a
    dispatch not yet run); the rows still say what is left to do, so the watchdog hands it
    out again. A batch that was only slow, not lost, finds its items claimed or done and
    does nothing."""
    now = utcnow()
    quiet_before = now - _claim_stale()
    out: list[tuple[int, list[int]]] = []
    with session_scope(write=True) as db:
        for run_id in repository.stalled_run_ids(db, quiet_before=quiet_before):
            db.execute(update(JudgeRun).where(JudgeRun.id == run_id,
                                              JudgeRun.status == RunStatus.QUEUED)
                       .values(status=RunStatus.RUNNING, started_at=now))
            item_ids = repository.hand_out_pending(db, run_id=run_id, now=now,
                                                   quiet_before=quiet_before)
            if item_ids:
                out.append((run_id, item_ids))
    return out
