"""Restore what a full-fidelity record says happened to an item: its labels, AI labels with
their reviews, adjudications and gold answer. People are matched by email; someone this
server has never seen gets an account that cannot log in, so every label keeps its author.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.core.security import hash_password
from app.items.parsing import ParsedItem
from app.items.repository import refresh_in_queue
from app.models import (
    Adjudication,
    AiLabel,
    HumanLabel,
    Item,
    JudgeRun,
    Response,
    Review,
    RuleSet,
    User,
)
from app.models.judging import RunStatus


class _Context:
    """Per import: users by email, rule sets by version, one judge run per source run."""

    def __init__(self, db: Session, project_id: int, task_type: str) -> None:
        self.db, self.project_id, self.task_type = db, project_id, task_type
        self.users: dict[str, int] = {}
        self.versions = dict(db.execute(select(RuleSet.version, RuleSet.id).where(
            RuleSet.project_id == project_id)).all())
        self.runs: dict[str, int] = {}

    def user(self, email: str | None) -> int | None:
        if not email:
            return None
        email = email.strip().lower()
        if email not in self.users:
            uid = self.db.scalar(select(User.id).where(User.email == email))
            if uid is None:
                user = User(email=email, name=email.split("@")[0], is_active=False,
                            password_hash=hash_password(secrets.token_urlsafe(32)))
                self.db.add(user)
                self.db.flush()
                uid = user.id
            self.users[email] = uid
        return self.users[email]

    def rule_set(self, version: int | None) -> int | None:
        return self.versions.get(version) if version is not None else None

    def run(self, described: dict[str, Any] | None) -> int:
        described = described or {}
        key = repr(sorted((described.get("config") or {}).items())) + str(
            described.get("created_at"))
        if key not in self.runs:
            run = JudgeRun(project_id=self.project_id, config=described.get("config") or {},
                           selection={"imported": True}, status=RunStatus.SUCCEEDED,
                           created_at=_when(described.get("created_at")),
                           finished_at=_when(described.get("created_at")))
            self.db.add(run)
            self.db.flush()
            self.runs[key] = run.id
        return self.runs[key]


def _when(value: datetime | str | None) -> datetime:
    """A checked timestamp (app.items.history_schema), in UTC; now when there is none."""
    from datetime import UTC

    from app.models.types import utcnow

    if not value:
        return utcnow()
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def restore(db: Session, *, project_id: int, task_type: str,
            items: list[tuple[int, ParsedItem]]) -> None:
    """Write the history of freshly inserted items ((item id, parsed record) pairs)."""
    todo = [(i, p) for i, p in items if p.history is not None or p.gold is not None]
    if not todo:
        return
    ctx = _Context(db, project_id, task_type)
    ids = [i for i, _ in todo]
    by_item: dict[int, list[int]] = {i: [] for i in ids}
    for rid, item_id in db.execute(select(Response.id, Response.item_id)
                                   .where(Response.item_id.in_(ids))
                                   .order_by(Response.item_id, Response.position)):
        by_item[item_id].append(rid)
    for item_id, parsed in todo:
        _restore_item(ctx, item_id, parsed, by_item[item_id])
    db.execute(update(Item).where(Item.id.in_(ids)).values(
        consensus_stale=True,
        label_count=select(func.count()).select_from(HumanLabel)
        .where(HumanLabel.item_id == Item.id).scalar_subquery()))
    refresh_in_queue(db, where=Item.id.in_(ids))  # now that labels, routes and gold are in


def _restore_item(ctx: _Context, item_id: int, parsed: ParsedItem, rids: list[int]) -> None:
    db = ctx.db

    def r(index: int | None) -> int | None:
        return rids[index] if index is not None and 0 <= index < len(rids) else None

    def rs(indexes: list[int] | None) -> list[int] | None:
        return [rids[i] for i in indexes if 0 <= i < len(rids)] if indexes is not None else None

    def keyed(mapping: dict[str, Any] | None) -> dict[str, Any]:
        return {str(rids[int(k)]): v for k, v in (mapping or {}).items()
                if 0 <= int(k) < len(rids)}

    for n, resp in enumerate(parsed.responses):
        if resp.parent is not None or resp.created_by:
            db.execute(update(Response).where(Response.id == rids[n]).values(
                parent_response_id=r(resp.parent), created_by_id=ctx.user(resp.created_by)))
    if parsed.gold is not None:
        db.execute(update(Item).where(Item.id == item_id).values(
            gold={"ranking": rs(parsed.gold)}, is_gold=True))
    history = parsed.history or {}
    if history.get("round", 1) != 1:
        db.execute(update(Item).where(Item.id == item_id).values(round=history["round"]))
    for n, lab in enumerate(history.get("labels", [])):
        user_id = ctx.user(lab.get("labeler"))
        if user_id is None:
            continue
        db.execute(insert(HumanLabel).values(
            project_id=ctx.project_id, item_id=item_id, user_id=user_id,
            rule_set_id=ctx.rule_set(lab.get("rule_set_version")),
            idempotency_key=f"import-{item_id}-{n}-{secrets.token_hex(8)}",
            task_type=lab.get("task_type") or ctx.task_type,
            response_a_id=r(lab.get("a")), response_b_id=r(lab.get("b")),
            choice=lab.get("choice"), strength=lab.get("strength"),
            ranking=rs(lab.get("ranking")),
            ratings=keyed(lab.get("ratings")) if lab.get("ratings") is not None else None,
            edited_response_id=r(lab.get("edited")),
            rule_violations=keyed(lab.get("rule_violations")),
            rationale=lab.get("rationale") or "", time_spent_ms=lab.get("time_spent_ms") or 0,
            created_at=_when(lab.get("created_at"))))
    for ai in history.get("ai_labels", []):
        label = AiLabel(
            run_id=ctx.run(ai.get("run")), item_id=item_id, project_id=ctx.project_id,
            rule_set_id=ctx.rule_set(ai.get("rule_set_version")),
            response_a_id=r(ai.get("a")), response_b_id=r(ai.get("b")),
            p_a_first=ai.get("p_a_first"), p_a_second=ai.get("p_a_second"),
            preference=ai.get("preference", 0.5), confidence=ai.get("confidence", 0.5),
            consistent=bool(ai.get("consistent")), choice=ai.get("choice") or "a",
            ranking=rs(ai.get("ranking")),
            pairs=[{**p, "a": r(p.get("a")), "b": r(p.get("b"))} for p in ai.get("pairs") or []],
            rule_verdicts=keyed(ai.get("rule_verdicts")), rationale=ai.get("rationale"),
            route=ai.get("route") or "human", prompt_tokens=ai.get("prompt_tokens") or 0,
            completion_tokens=ai.get("completion_tokens") or 0,
            latency_ms=ai.get("latency_ms") or 0, created_at=_when(ai.get("created_at")))
        db.add(label)
        db.flush()
        for n, rv in enumerate(ai.get("reviews") or []):
            db.add(Review(ai_label_id=label.id, project_id=ctx.project_id, item_id=item_id,
                          reviewer_id=ctx.user(rv.get("reviewer")),
                          idempotency_key=f"import-{label.id}-{n}-{secrets.token_hex(8)}",
                          action=rv.get("action") or "approve", ranking=rs(rv.get("ranking")),
                          edited_response_id=r(rv.get("edited")), comment=rv.get("comment") or "",
                          created_at=_when(rv.get("created_at"))))
        if label.route in ("accepted", "review"):
            db.execute(update(Item).where(Item.id == item_id).values(ai_accepted=True))
    for n, adj in enumerate(history.get("adjudications", [])):
        db.add(Adjudication(project_id=ctx.project_id, item_id=item_id,
                            reviewer_id=ctx.user(adj.get("reviewer")),
                            idempotency_key=f"import-adj-{item_id}-{n}-{secrets.token_hex(8)}",
                            ranking=rs(adj.get("ranking")), comment=adj.get("comment") or "",
                            created_at=_when(adj.get("created_at"))))
    db.flush()
