"""Reviewers approve, override or edit what the AI judge said; every action is recorded."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.consensus.repository import mark_stale
from app.core.errors import BadRequest, Conflict, NotFound
from app.items import repository as items
from app.models import AiLabel, Item, Project, Response, Review, Rule, User
from app.models.items import ResponseSource
from app.models.judging import ReviewAction
from app.projects.service import get_rules
from app.reviewing import repository


@dataclass(frozen=True)
class ReviewTask:
    label: AiLabel
    item: Item
    responses: list[Response]  # in the AI's order, best first
    rules: list[Rule]
    remaining: int


def next_review(db: Session, *, project: Project, skip: list[int] | None = None
                ) -> ReviewTask | None:
    label = repository.next_to_review(db, project_id=project.id, skip=skip or [])
    if label is None:
        return None
    item = items.get_item(db, item_id=label.item_id)
    if item is None:
        raise NotFound("That item is gone.")
    by_id = {r.id: r for r in items.list_responses(db, item_id=item.id)}
    ordered = [by_id[i] for i in (label.ranking or []) if i in by_id]
    _, rules = get_rules(db, project_id=project.id)
    return ReviewTask(label=label, item=item, responses=ordered, rules=rules,
                      remaining=repository.count_to_review(db, project_id=project.id))


def submit_review(db: Session, *, project: Project, user: User, ai_label_id: int, action: str,
                  idempotency_key: str, best_response_id: int | None = None,
                  edit_text: str | None = None, comment: str = "") -> Review:
    """Record a review; the same key twice stores one review."""
    earlier = repository.review_by_key(db, key=idempotency_key)
    if earlier is not None:
        if earlier.reviewer_id != user.id:
            raise Conflict("This submission key belongs to someone else.")
        return earlier
    label = db.get(AiLabel, ai_label_id)
    if label is None or label.project_id != project.id:
        raise NotFound("No such AI label in this project.")
    ranking = list(label.ranking or [])
    edited_id = None
    if action == ReviewAction.APPROVE:
        pass
    elif action == ReviewAction.OVERRIDE:
        if best_response_id not in ranking:
            raise BadRequest("Choose which response is best.")
        if best_response_id == ranking[0]:
            action = ReviewAction.APPROVE  # the reviewer agreed after all
        ranking = [best_response_id] + [r for r in ranking if r != best_response_id]
    elif action == ReviewAction.EDIT:
        text = (edit_text or "").strip()
        parent = db.get(Response, ranking[0]) if ranking else None
        if parent is None or not text or text == parent.text.strip():
            raise BadRequest("Edit the preferred response into a better one, or approve it.")
        edited = Response(item_id=label.item_id, text=text, source=ResponseSource.HUMAN_EDIT,
                          parent_response_id=parent.id, created_by_id=user.id,
                          position=len(items.list_responses(db, item_id=label.item_id)))
        db.add(edited)
        db.flush()
        edited_id = edited.id
    else:
        raise BadRequest("A review approves, overrides or edits.")
    review = Review(ai_label_id=label.id, project_id=project.id, item_id=label.item_id,
                    reviewer_id=user.id, idempotency_key=idempotency_key, action=action,
                    ranking=ranking, edited_response_id=edited_id, comment=comment.strip())
    db.add(review)
    db.flush()
    mark_stale(db, item_ids=[label.item_id])
    return review
