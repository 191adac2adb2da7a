"""From an item to an AI label: the questions to ask, the cache, and the verdict.

Both orders of every pair are asked (and each rule per response); the answers become one AI
label row. Nothing here knows about runs or tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.db import insert_ignore, session_scope
from app.judging import repository
from app.judging.prompts import DEFAULT_TEMPLATE, Question, render_pair, render_rule
from app.judging.providers.base import Answer, Provider, cache_key
from app.judging.scoring import PairVerdict, bradley_terry, combine, route
from app.models import JudgeCacheEntry
from app.models.projects import TaskType
from app.models.types import utcnow


class ItemFailed(Exception):
    """The judge's answers for this item cannot be used; the message says why."""


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
    """The answers to an item's questions -> one AI label row (raises ItemFailed)."""
    errors = [a.error for a in answers if a.error]
    if errors:
        raise ItemFailed(errors[0])
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


