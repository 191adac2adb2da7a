"""Judge runs: configure, start, cancel, resume, watch; and judge a batch of items.

A run freezes the configuration and the rule-set version it started with. Its items are
rows (judge_run_items), so progress is counted, never kept. A batch claims its items with a
conditional UPDATE, writes one AI label per (run, item) however often it runs, and puts an
item whose judge failed transiently back to pending for the retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Conflict, NotFound
from app.core.jobs import enqueue_after_commit
from app.judging import repository
from app.judging.prompts import DEFAULT_TEMPLATE, check_template, render_pair
from app.judging.schemas import JudgeConfigIn, RunIn
from app.judging.work import item_work
from app.models import (
    JudgeConfig,
    JudgePreview,
    JudgeRun,
    Project,
    User,
)
from app.models import JudgeRunItem as RunItem
from app.models.judging import RunItemStatus, RunStatus
from app.models.types import utcnow
from app.projects.service import get_rules


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
    if data.provider == "reward":
        data = _reward_judge(db, project=project, data=data)
    config = get_config(db, project=project)
    for field, value in _config_fields(data).items():
        setattr(config, field, value)
    config.updated_at = utcnow()
    db.flush()
    return config


def _reward_judge(db: Session, *, project: Project, data: JudgeConfigIn) -> JudgeConfigIn:
    """A reward model judges preferences only; ``checkpoint:N`` becomes its folder."""
    from app.training.service import resolve_base_model

    if not data.model:
        raise BadRequest("A reward-model judge needs a checkpoint: checkpoint:N or a folder.")
    if data.judge_rules:
        raise BadRequest("A reward model scores responses; it cannot check rules. Turn "
                         "'judge every rule' off.")
    return data.model_copy(update={"model": resolve_base_model(
        db, project_id=project.id, base_model=data.model)})


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


# -- preview: the judge's answer on one real item, with a draft configuration ------------


def start_preview(db: Session, *, project: Project, data: JudgeConfigIn,
                  external_id: str = "") -> JudgePreview:
    """Render the draft template on a real item now; ask the judge in a worker."""
    check_template(data.template)
    item_id = repository.preview_item_id(db, project_id=project.id, external_id=external_id)
    if item_id is None:
        raise NotFound(f"No item with the external id {external_id!r}." if external_id
                       else "The project has no items to preview on.")
    task_type, prompt, responses, rules = item_work(db, item_id=item_id,
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


def _config_fields(data: JudgeConfigIn) -> dict[str, Any]:
    fields = data.model_dump(exclude={"temperature", "max_tokens", "top_logprobs",
                                      "request_timeout_s"})
    fields["sampling"] = {"temperature": data.temperature, "max_tokens": data.max_tokens,
                          "top_logprobs": data.top_logprobs,
                          "request_timeout_s": data.request_timeout_s}
    return fields


