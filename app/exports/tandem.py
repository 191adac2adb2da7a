"""Tandem's full-fidelity format: one line per item with every label, review and decision,
responses referred to by their index in the item, people by email. ``tandem import`` reads
it back (app.items.history), so a project can move between servers losing nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.exports.filters import ExportFilters
from app.exports.records import Tally, tagged
from app.models import (
    Adjudication,
    AiLabel,
    HumanLabel,
    Item,
    ItemConsensus,
    JudgeRun,
    Response,
    Review,
    RuleSet,
    User,
)

FORMAT_VERSION = 1
BATCH = 500
PARQUET_COLUMNS = ("external_id", "prompt", "metadata", "round", "gold", "responses", "labels",
                   "ai_labels", "adjudications", "consensus", "tandem")


def _iso(value) -> str | None:  # noqa: ANN001
    return value.isoformat() if value is not None else None


class _Refs:
    """Response ids -> indexes within the item; user ids -> emails; rule sets -> versions."""

    def __init__(self, responses: list[Response], emails: dict[int, str],
                 versions: dict[int, int]) -> None:
        self.index = {r.id: n for n, r in enumerate(responses)}
        self.emails, self.versions = emails, versions

    def r(self, rid: int | None) -> int | None:
        return self.index.get(rid) if rid is not None else None

    def rs(self, ids: list[int] | None) -> list[int] | None:
        return [self.index[i] for i in ids if i in self.index] if ids is not None else None

    def keyed(self, mapping: dict[str, Any] | None) -> dict[str, Any]:
        return {str(self.index[int(k)]): v for k, v in (mapping or {}).items()
                if int(k) in self.index}

    def user(self, uid: int | None) -> str | None:
        return self.emails.get(uid) if uid is not None else None

    def version(self, rule_set_id: int | None) -> int | None:
        return self.versions.get(rule_set_id) if rule_set_id is not None else None


def record(item: Item, responses: list[Response], labels: list[HumanLabel],
           ai_labels: list[tuple[AiLabel, dict, list[Review]]],
           adjudications: list[Adjudication], consensus: ItemConsensus | None,
           refs: _Refs) -> dict[str, Any]:
    gold = (item.gold or {}).get("ranking")
    return {
        "tandem": FORMAT_VERSION,
        "external_id": item.external_id,
        "prompt": item.prompt,
        "metadata": item.meta or {},
        "round": item.round,
        "gold": refs.rs(gold) if gold else None,
        "responses": [{"text": r.text, "model": r.model_name, "source": r.source,
                       "parent": refs.r(r.parent_response_id),
                       "created_by": refs.user(r.created_by_id)} for r in responses],
        "labels": [{
            "labeler": refs.user(lab.user_id), "task_type": lab.task_type,
            "rule_set_version": refs.version(lab.rule_set_id),
            "a": refs.r(lab.response_a_id), "b": refs.r(lab.response_b_id),
            "choice": lab.choice, "strength": lab.strength, "ranking": refs.rs(lab.ranking),
            "ratings": refs.keyed(lab.ratings) if lab.ratings is not None else None,
            "edited": refs.r(lab.edited_response_id),
            "rule_violations": refs.keyed(lab.rule_violations), "rationale": lab.rationale,
            "time_spent_ms": lab.time_spent_ms, "created_at": _iso(lab.created_at),
        } for lab in labels],
        "ai_labels": [{
            "run": run, "rule_set_version": refs.version(ai.rule_set_id),
            "a": refs.r(ai.response_a_id), "b": refs.r(ai.response_b_id),
            "p_a_first": ai.p_a_first, "p_a_second": ai.p_a_second,
            "preference": ai.preference, "confidence": ai.confidence,
            "consistent": ai.consistent, "choice": ai.choice, "ranking": refs.rs(ai.ranking),
            "pairs": [{**p, "a": refs.r(p["a"]), "b": refs.r(p["b"])} for p in ai.pairs or []],
            "rule_verdicts": refs.keyed(ai.rule_verdicts), "rationale": ai.rationale,
            "route": ai.route, "prompt_tokens": ai.prompt_tokens,
            "completion_tokens": ai.completion_tokens, "latency_ms": ai.latency_ms,
            "created_at": _iso(ai.created_at),
            "reviews": [{"reviewer": refs.user(rv.reviewer_id), "action": rv.action,
                         "ranking": refs.rs(rv.ranking), "edited": refs.r(rv.edited_response_id),
                         "comment": rv.comment, "created_at": _iso(rv.created_at)}
                        for rv in reviews],
        } for ai, run, reviews in ai_labels],
        "adjudications": [{"reviewer": refs.user(a.reviewer_id), "ranking": refs.rs(a.ranking),
                           "comment": a.comment, "created_at": _iso(a.created_at)}
                          for a in adjudications],
        "consensus": None if consensus is None else {
            "status": consensus.status, "source": consensus.source,
            "ranking": refs.rs(consensus.ranking),
            "pairs": [[refs.r(c), refs.r(r), p, m] for c, r, p, m in consensus.pairs],
            "agreement": consensus.agreement, "confidence": consensus.confidence,
        },
    }


def _load(db: Session, project_id: int, items: list[Item]) -> list[dict[str, Any]]:
    ids = [i.id for i in items]
    responses: dict[int, list[Response]] = defaultdict(list)
    for r in db.scalars(select(Response).where(Response.item_id.in_(ids))
                        .order_by(Response.item_id, Response.position, Response.id)):
        responses[r.item_id].append(r)
    labels: dict[int, list[HumanLabel]] = defaultdict(list)
    for lab in db.scalars(select(HumanLabel).where(HumanLabel.item_id.in_(ids))
                          .order_by(HumanLabel.id)):
        labels[lab.item_id].append(lab)
    ai_rows = list(db.scalars(select(AiLabel).where(AiLabel.item_id.in_(ids))
                              .order_by(AiLabel.id)))
    runs = {r.id: r for r in db.scalars(select(JudgeRun).where(
        JudgeRun.id.in_({a.run_id for a in ai_rows})))}
    reviews: dict[int, list[Review]] = defaultdict(list)
    for rv in db.scalars(select(Review).where(Review.item_id.in_(ids)).order_by(Review.id)):
        reviews[rv.ai_label_id].append(rv)
    ai: dict[int, list[tuple[AiLabel, dict, list[Review]]]] = defaultdict(list)
    for a in ai_rows:
        run = runs.get(a.run_id)
        described = {"config": run.config if run else {},
                     "created_at": _iso(run.created_at) if run else None}
        ai[a.item_id].append((a, described, reviews.get(a.id, [])))
    adjudications: dict[int, list[Adjudication]] = defaultdict(list)
    for adj in db.scalars(select(Adjudication).where(Adjudication.item_id.in_(ids))
                          .order_by(Adjudication.id)):
        adjudications[adj.item_id].append(adj)
    consensus = {c.item_id: c for c in db.scalars(
        select(ItemConsensus).where(ItemConsensus.item_id.in_(ids)))}
    user_ids = ({lab.user_id for ls in labels.values() for lab in ls}
                | {r.created_by_id for rs in responses.values() for r in rs if r.created_by_id}
                | {rv.reviewer_id for rs in reviews.values() for rv in rs if rv.reviewer_id}
                | {a.reviewer_id for ls in adjudications.values() for a in ls if a.reviewer_id})
    emails = dict(db.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
                  .all()) if user_ids else {}
    versions = dict(db.execute(select(RuleSet.id, RuleSet.version)
                               .where(RuleSet.project_id == project_id)).all())
    return [record(i, responses[i.id], labels[i.id], ai[i.id], adjudications[i.id],
                   consensus.get(i.id), _Refs(responses[i.id], emails, versions))
            for i in items]


def iter_batches(*, project_id: int, filters: ExportFilters, tally: Tally | None = None
                 ) -> Iterator[list[tuple[Item, dict[str, Any]]]]:
    """Every item of the project (only the tag and round filters apply: this is the whole
    record), in id order, a batch per transaction."""
    tally = tally if tally is not None else Tally()
    chosen = [Item.project_id == project_id, Item.ready]
    if filters.round is not None:
        chosen.append(Item.round == filters.round)
    if filters.tag is not None:
        has_tag = Item.id.in_(tagged(project_id, filters.tag))  # a range of item_tags
        with session_scope() as db:
            every = select(func.count()).select_from(Item).where(*chosen)
            tally.filtered_out += ((db.scalar(every) or 0)
                                   - (db.scalar(every.where(has_tag)) or 0))
        chosen.append(has_tag)
    after = 0
    while True:
        with session_scope() as db:
            query = select(Item).where(*chosen, Item.id > after)
            items = list(db.scalars(query.order_by(Item.id).limit(BATCH)))
            if not items:
                return
            after = items[-1].id
            rows = _load(db, project_id, items)
        tally.items += len(items)
        yield list(zip(items, rows, strict=True))
