"""Judge runs: configure, start, cancel, resume, watch; and judge a batch of items.

A run freezes the configuration and the rule-set version it started with. Its items are
rows (judge_run_items), so progress is counted, never kept. A batch claims its items with a
conditional UPDATE, writes one AI label per (run, item) however often it runs, and puts an
item whose judge failed transiently back to pending for the retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.core.db import insert_ignore, session_scope
from app.core.errors import BadRequest, Conflict, NotFound
from app.core.jobs import enqueue_after_commit
from app.items import repository as items_repo
from app.judging import repository
from app.judging.prompts import DEFAULT_TEMPLATE, Question, check_template, render_pair, render_rule
from app.judging.providers.base import Answer, Provider, cache_key
from app.judging.schemas import JudgeConfigIn, RunIn
from app.judging.scoring import PairVerdict, bradley_terry, combine, route
from app.models import (
    AiLabel,
    JudgeCacheEntry,
    JudgeConfig,
    JudgePreview,
    JudgeRun,
    Project,
    User,
)
from app.models import JudgeRunItem as RunItem
from app.models.items import ResponseSource
from app.models.judging import RunItemStatus, RunStatus
from app.models.projects import TaskType
from app.models.types import utcnow
from app.projects.service import get_rules

DISPATCH_CHUNK = 8


def _claim_stale() -> timedelta:
    from app.core.config import get_settings

    return timedelta(seconds=get_settings().judge_claim_stale_s)


def get_config(db: Session, *, project: Project) -> JudgeConfig:
    """The project's judge configuration, created with defaults on first use."""
    config = repository.get_config(db, project_id=project.id)
    if config is None:
        config = JudgeConfig(project_id=project.id, provider="local", model="",
                             template=DEFAULT_TEMPLATE,
                             sampling={"temperature": 0.0, "max_tokens": 256,
                                       "top_logprobs": 20})
        db.add(config)
        db.flush()
    return config


def update_config(db: Session, *, project: Project, data: JudgeConfigIn) -> JudgeConfig:
    check_template(data.template)
    if data.provider == "openai" and not data.model:
        raise BadRequest("An OpenAI-compatible judge needs a model name.")
    config = get_config(db, project=project)
    for field, value in _config_fields(data).items():
        setattr(config, field, value)
    config.updated_at = utcnow()
    db.flush()
    return config


def config_snapshot(config: JudgeConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in (
        "provider", "model", "base_url", "api_key_env", "template", "sampling",
        "confidence_threshold", "review_fraction", "max_concurrency", "requests_per_minute",
        "batch_size", "judge_rules")}


def start_run(db: Session, *, project: Project, user: User | None, data: RunIn) -> JudgeRun:
    """Freeze the configuration and rules, list the items, and queue the run."""
    config = get_config(db, project=project)
    rule_set, _ = get_rules(db, project_id=project.id)
    item_ids = repository.select_item_ids(db, project_id=project.id, mode=data.mode,
                                          external_id_prefix=data.external_id_prefix)
    if not item_ids:
        raise BadRequest("No items match this selection.")
    run = JudgeRun(project_id=project.id, rule_set_id=rule_set.id if rule_set else None,
                   config=config_snapshot(config), selection=data.model_dump(),
                   status=RunStatus.QUEUED, created_by_id=user.id if user else None)
    db.add(run)
    db.flush()
    for start in range(0, len(item_ids), 1000):
        db.execute(insert(RunItem), [{"run_id": run.id, "item_id": i,
                                      "status": RunItemStatus.PENDING, "attempts": 0}
                                     for i in item_ids[start : start + 1000]])
    enqueue_after_commit(db, "judging.dispatch", run.id)
    return run


def cancel_run(db: Session, *, run: JudgeRun) -> None:
    if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
        raise Conflict(f"The run is {run.status}; only a queued or running run can be "
                       "cancelled.")
    run.status = RunStatus.CANCELLED
    run.finished_at = utcnow()
    db.flush()


def resume_run(db: Session, *, run: JudgeRun) -> None:
    """Start a cancelled or failed run again: its finished items are kept, failed ones retried."""
    if run.status not in (RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.SUCCEEDED):
        raise Conflict(f"The run is {run.status} already.")
    db.execute(update(RunItem).where(RunItem.run_id == run.id,
                                     RunItem.status == RunItemStatus.FAILED)
               .values(status=RunItemStatus.PENDING, error=None))
    run.status, run.finished_at, run.error = RunStatus.QUEUED, None, None
    db.flush()
    enqueue_after_commit(db, "judging.dispatch", run.id)


@dataclass(frozen=True)
class RunProgress:
    run: JudgeRun
    counts: dict[str, int]
    totals: dict[str, int]
    routes: dict[str, int]
    failures: list[RunItem]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return self.counts["done"] + self.counts["failed"]

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 0

    @property
    def items_per_s(self) -> float:
        if not self.run.started_at or not self.counts["done"]:
            return 0.0
        end = self.run.finished_at or utcnow()
        seconds = max((end - self.run.started_at).total_seconds(), 1e-3)
        return self.counts["done"] / seconds

    @property
    def inconsistency_rate(self) -> float:
        labels = self.totals["labels"]
        return (labels - self.totals["consistent"]) / labels if labels else 0.0


def progress(db: Session, *, run: JudgeRun) -> RunProgress:
    return RunProgress(run=run, counts=repository.status_counts(db, run_id=run.id),
                       totals=repository.label_totals(db, run_id=run.id),
                       routes=repository.route_counts(db, run_id=run.id),
                       failures=repository.failures(db, run_id=run.id))


# -- the work, run by Celery tasks ------------------------------------------------------


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
        work = {i: _item_work(db, item_id=i, project_id=project_id) for i in mine}
    todo = [i for i in mine if not _judged(run_id, i)]
    if not mine:
        return
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
        except _ItemFailed as exc:
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


class _ItemFailed(Exception):
    pass


def _item_work(db: Session, *, item_id: int, project_id: int) -> tuple:
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


def _judged(run_id: int, item_id: int) -> bool:
    with session_scope() as db:
        return repository.ai_label(db, run_id=run_id, item_id=item_id) is not None


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


def ask(provider: Provider, questions: list[Question]) -> list[Answer]:
    """Answer questions, serving identical ones from the cache and storing new answers."""
    keys = [cache_key(provider, q) for q in questions]
    with session_scope() as db:
        hits = repository.cached(db, keys=keys)
    todo = [i for i, k in enumerate(keys) if k not in hits]
    fresh = provider.answer([questions[i] for i in todo]) if todo else []
    answers: list[Answer] = [Answer.from_cache(hits[k]) if k in hits else Answer()
                             for k in keys]
    for i, answer in zip(todo, fresh, strict=True):
        answers[i] = answer
    new = [{"key": keys[i], "value": a.to_cache(), "created_at": utcnow()}
           for i, a in zip(todo, fresh, strict=True) if a.error is None]
    if new:
        with session_scope(write=True) as db:
            insert_ignore(db, JudgeCacheEntry, new, keys=["key"])
    return answers


@dataclass
class ItemPlan:
    """The questions for one item: both orders of every pair, then each rule per response."""

    item_id: int
    task_type: str
    pairs: list[tuple[int, int]]
    judged: list[int]
    rule_questions: list[tuple[int, str]]
    questions: list[Question]


def plan_item(config: dict[str, Any], *, item_id: int, task_type: str, prompt: Any,
              responses: list[tuple[int, str]], rules: list[dict[str, str]]) -> ItemPlan:
    template = config.get("template") or DEFAULT_TEMPLATE
    texts = dict(responses)
    ids = [rid for rid, _ in responses]
    pairs = [(ids[0], ids[1])] if task_type == TaskType.PAIRWISE else [
        (ids[i], ids[j]) for i in range(len(ids)) for j in range(i + 1, len(ids))]
    questions: list[Question] = []
    for a, b in pairs:
        questions.append(render_pair(template, rules=rules, prompt=prompt,
                                     response_a=texts[a], response_b=texts[b]))
        questions.append(render_pair(template, rules=rules, prompt=prompt,
                                     response_a=texts[b], response_b=texts[a]))
    judged = sorted({r for pair in pairs for r in pair}, key=ids.index)
    rule_questions = [(rid, rule["id"]) for rid in judged for rule in rules] \
        if config.get("judge_rules", True) else []
    questions += [render_rule(next(r for r in rules if r["id"] == key), prompt=prompt,
                              response=texts[rid]) for rid, key in rule_questions]
    return ItemPlan(item_id=item_id, task_type=task_type, pairs=pairs, judged=judged,
                    rule_questions=rule_questions, questions=questions)


def finish_item(plan: ItemPlan, answers: list[Answer], config: dict[str, Any], *, run_id: int,
                project_id: int, rule_set_id: int | None) -> dict:
    """The answers to an item's questions -> one AI label row (raises _ItemFailed)."""
    errors = [a.error for a in answers if a.error]
    if errors:
        raise _ItemFailed(errors[0])
    pairs = plan.pairs
    verdicts: list[PairVerdict] = [
        combine(a, b, answers[2 * n].p_first, answers[2 * n + 1].p_first)  # type: ignore[arg-type]
        for n, (a, b) in enumerate(pairs)]
    rule_verdicts: dict[str, dict[str, float]] = {}
    for (rid, key), answer in zip(plan.rule_questions, answers[2 * len(pairs):], strict=True):
        rule_verdicts.setdefault(str(rid), {})[key] = round(float(answer.p_first or 0), 4)
    if plan.task_type == TaskType.PAIRWISE:
        verdict = verdicts[0]
        ranking = [verdict.a, verdict.b] if verdict.preference >= 0.5 else [verdict.b, verdict.a]
        consistent, confidence = verdict.consistent, verdict.confidence
        preference = verdict.preference
    else:
        ranking = bradley_terry(plan.judged, verdicts)
        consistent = all(v.consistent for v in verdicts)
        confidence = min(v.confidence for v in verdicts)
        top = next(v for v in verdicts if ranking[0] in (v.a, v.b))
        preference = top.preference
    rationales = [a.rationale for a in answers[: 2 * len(pairs)] if a.rationale]
    return {
        "run_id": run_id, "item_id": plan.item_id, "project_id": project_id,
        "rule_set_id": rule_set_id, "response_a_id": pairs[0][0], "response_b_id": pairs[0][1],
        "p_a_first": verdicts[0].p_a_first, "p_a_second": verdicts[0].p_a_second,
        "preference": preference, "confidence": confidence, "consistent": consistent,
        "choice": "a" if ranking[0] == pairs[0][0] else "b",
        "ranking": ranking,
        "pairs": [{"a": v.a, "b": v.b, "p_a_first": v.p_a_first, "p_a_second": v.p_a_second}
                  for v in verdicts],
        "rule_verdicts": rule_verdicts,
        "rationale": "\n\n".join(rationales)[:10_000] or None,
        "route": route(consistent=consistent, confidence=confidence,
                       threshold=float(config.get("confidence_threshold", 0.7)),
                       review_fraction=float(config.get("review_fraction", 0.1)),
                       run_id=run_id, item_id=plan.item_id),
        "prompt_tokens": sum(a.prompt_tokens for a in answers),
        "completion_tokens": sum(a.completion_tokens for a in answers),
        "latency_ms": sum(a.latency_ms for a in answers),
        "created_at": utcnow(),
    }


def judge_item(provider: Provider, config: dict[str, Any], *, run_id: int, item_id: int,
               project_id: int, rule_set_id: int | None, task_type: str, prompt: Any,
               responses: list[tuple[int, str]], rules: list[dict[str, str]]) -> dict:
    """Judge one item now (the preview); runs use judge_batch, which batches across items."""
    plan = plan_item(config, item_id=item_id, task_type=task_type, prompt=prompt,
                     responses=responses, rules=rules)
    return finish_item(plan, ask(provider, plan.questions), config, run_id=run_id,
                       project_id=project_id, rule_set_id=rule_set_id)


# -- preview: the judge's answer on one real item, with a draft configuration ------------


def start_preview(db: Session, *, project: Project, data: JudgeConfigIn,
                  external_id: str = "") -> JudgePreview:
    """Render the draft template on a real item now; ask the judge in a worker."""
    check_template(data.template)
    item_id = repository.preview_item_id(db, project_id=project.id, external_id=external_id)
    if item_id is None:
        raise NotFound(f"No item with the external id {external_id!r}." if external_id
                       else "The project has no items to preview on.")
    task_type, prompt, responses, rules = _item_work(db, item_id=item_id,
                                                     project_id=project.id)
    config = {**config_snapshot(JudgeConfig(**_config_fields(data))), "preview": True}
    question = render_pair(data.template, rules=rules, prompt=prompt,
                           response_a=responses[0][1], response_b=responses[1][1])
    preview = JudgePreview(project_id=project.id, item_id=item_id, config=config,
                           rendered=question.messages[0]["content"], status=RunStatus.QUEUED)
    db.add(preview)
    db.flush()
    enqueue_after_commit(db, "judging.preview", preview.id)
    return preview


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
        task_type, prompt, responses, rules = _item_work(db, item_id=item_id,
                                                         project_id=project_id)
    try:
        label = judge_item(build_provider(config), config, run_id=0, item_id=item_id,
                           project_id=project_id, rule_set_id=None, task_type=task_type,
                           prompt=prompt, responses=responses, rules=rules)
        status, result, error = RunStatus.SUCCEEDED, _jsonable(label), None
    except (TransientError, _ItemFailed, BadRequest, ValueError, RuntimeError) as exc:
        status, result, error = RunStatus.FAILED, None, str(getattr(exc, "message", exc))
    with session_scope(write=True) as db:
        db.execute(update(JudgePreview).where(JudgePreview.id == preview_id)
                   .values(status=status, result=result, error=error))


def _config_fields(data: JudgeConfigIn) -> dict[str, Any]:
    fields = data.model_dump(exclude={"temperature", "max_tokens", "top_logprobs",
                                      "request_timeout_s"})
    fields["sampling"] = {"temperature": data.temperature, "max_tokens": data.max_tokens,
                          "top_logprobs": data.top_logprobs,
                          "request_timeout_s": data.request_timeout_s}
    return fields


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
            repository.set_items(db, run_id=run_id, item_ids=item_ids,
                                 status=RunItemStatus.PENDING)
            out.append((run_id, item_ids))
    return out
