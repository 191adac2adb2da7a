"""Each item's final preference, by a documented policy.

Precedence, strongest first: an admin's gold answer; a reviewer's adjudication of a
conflict; a reviewer's review of the AI label; the human labels, aggregated (majority per
response pair, Bradley–Terry for the order, optionally weighted by each labeler's
Dawid–Skene reliability); an AI label the judge was confident and consistent about.
Human labels that disagree beyond the project's threshold, or whose majority runs in a
circle, make a conflict that waits in the adjudication queue.

Consensus rows are derived state: any change to an item's labels marks the item stale
(in the same UPDATE that recounts its labels), and ``refresh`` recomputes stale items in
batches, each batch in its own write transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Row
from sqlalchemy.orm import Session

from app.consensus import aggregate, repository
from app.consensus.aggregate import Comparison, Outcome
from app.consensus.repository import ItemInputs
from app.core.db import session_scope
from app.core.errors import BadRequest, Conflict, NotFound
from app.items import repository as items
from app.models import Adjudication, HumanLabel, Item, ItemConsensus, Project, User
from app.models.consensus import ConsensusSource, ConsensusStatus, Weighting
from app.models.types import utcnow

BATCH = 500
# A labeler's weight must move this much before every item is recomputed with it.
WEIGHT_TOLERANCE = 0.05


def comparisons(label: HumanLabel) -> list[Comparison]:
    """What one human label says about each pair of the item's original responses."""
    if label.choice is not None and label.response_a_id and label.response_b_id:
        return aggregate.from_choice(label.user_id, label.response_a_id, label.response_b_id,
                                     label.choice, label.strength)
    if label.ranking:
        return aggregate.from_ranking(label.user_id, label.ranking)
    if label.ratings:
        return aggregate.from_ratings(label.user_id,
                                      {int(k): int(v) for k, v in label.ratings.items()})
    return []


def decide(x: ItemInputs, *, threshold: float, weights: dict[int, float] | None) -> dict:
    """The consensus row of one item (a dict for the item_consensus table)."""
    human = aggregate.aggregate(x.responses, (c for lab in x.labels for c in comparisons(lab)),
                                labels=len(x.labels), threshold=threshold, weights=weights)
    edits = [[edited, parent, 1.0, aggregate.PLAIN_MARGIN] for edited, parent in x.edits]
    row = {"item_id": x.item_id, "human_labels": len(x.labels), "agreement": human.agreement,
           "cycle": human.cycle, "confidence": None, "computed_at": utcnow(),
           "rule_set_id": x.labels[-1].rule_set_id if x.labels else None,
           "decided_at": x.labels[-1].created_at if x.labels else None}

    def decided(source: ConsensusSource, ranking: list[int] | None, pairs: list, when) -> dict:  # noqa: ANN001
        status = ConsensusStatus.DECIDED if pairs else ConsensusStatus.TIE
        return {**row, "status": status, "source": source, "ranking": ranking,
                "pairs": pairs, "decided_at": when or row["decided_at"]}

    if x.gold and x.gold.get("ranking"):
        ranking = list(x.gold["ranking"])
        return decided(ConsensusSource.GOLD, ranking, aggregate.ranking_pairs(ranking), None)
    if x.adjudication is not None:
        ranking = x.adjudication.ranking
        pairs = aggregate.ranking_pairs(ranking) if ranking else []
        return decided(ConsensusSource.ADJUDICATED, ranking, pairs + edits,
                       x.adjudication.created_at)
    ai = x.ai_label
    if x.review is not None:
        ranking = list(x.review.ranking or [])
        # a reviewer's edit is among the item's edits: preferred over what it came from
        pairs = aggregate.ranking_pairs(ranking)
        out = decided(ConsensusSource.AI_REVIEWED, ranking, pairs + edits,
                      x.review.created_at)
        reviewed = x.reviewed_label or ai
        if reviewed is None:
            return out
        return {**out, "confidence": reviewed.confidence, "rule_set_id": reviewed.rule_set_id}
    if x.labels:
        return _from_humans(row, human, edits)
    if ai is not None and ai.route == "accepted" and ai.ranking:
        pairs = aggregate.ai_pairs(ai.ranking, ai.pairs or [])
        out = decided(ConsensusSource.AI_ACCEPTED, list(ai.ranking), pairs, ai.created_at)
        return {**out, "confidence": ai.confidence, "rule_set_id": ai.rule_set_id}
    return {**row, "status": ConsensusStatus.PENDING, "source": None, "ranking": None,
            "pairs": []}


def _from_humans(row: dict, human: Outcome, edits: list) -> dict:
    pairs = human.pairs + edits
    status = human.status
    if status == ConsensusStatus.TIE and edits:
        status = ConsensusStatus.DECIDED  # the edits still say something to learn from
    return {**row, "status": status, "source": ConsensusSource.HUMAN,
            "ranking": human.ranking, "pairs": pairs}


def refresh(project_id: int, *, limit: int | None = None,
            progress: Callable[[int], None] | None = None, reestimate: bool = True) -> int:
    """Recompute the consensus of the project's stale items; returns how many.

    With reliability weighting, ``reestimate`` first runs Dawid–Skene over all the
    project's labels; pages pass False and use the weights last estimated (a background
    refresh re-estimates them)."""
    with session_scope() as db:
        project = db.get(Project, project_id)
        if project is None:
            return 0
        threshold, weighting = project.conflict_threshold, project.weighting
        stored = {u: r.weight for u, r in
                  repository.reliability(db, project_id=project_id).items()}
    weights = None
    if weighting == Weighting.RELIABILITY:
        weights = update_reliability(project_id) if reestimate else stored
    done = 0
    while limit is None or done < limit:
        size = BATCH if limit is None else min(BATCH, limit - done)
        with session_scope(write=True) as db:
            ids = repository.claim_stale(db, project_id=project_id, limit=size)
            if not ids:
                break
            _recompute(db, project_id=project_id, item_ids=ids, threshold=threshold,
                       weights=weights)
        done += len(ids)
        if progress is not None:
            progress(done)
    return done


def _recompute(db: Session, *, project_id: int, item_ids: list[int], threshold: float,
               weights: dict[int, float] | None) -> None:
    rows = [{**row, "project_id": project_id, "pair_count": len(row["pairs"])}
            for x in repository.inputs_for(db, item_ids=item_ids)
            for row in [decide(x, threshold=threshold, weights=weights)]]
    repository.replace_consensus(db, rows=rows)


def recompute_now(db: Session, *, project: Project, item_ids: list[int]) -> None:
    """Recompute some items in the caller's (write) transaction, with the stored weights:
    for a reviewer who must not see the item they just decided come round again."""
    weights = None
    if project.weighting == Weighting.RELIABILITY:
        weights = {u: r.weight for u, r in
                   repository.reliability(db, project_id=project.id).items()}
    _recompute(db, project_id=project.id, item_ids=item_ids,
               threshold=project.conflict_threshold, weights=weights)
    repository.clear_stale(db, item_ids=item_ids)


def update_reliability(project_id: int) -> dict[int, float]:
    """Re-estimate every labeler's reliability (Dawid–Skene over all response pairs); when
    a weight moved, every item is recomputed with the new weights."""
    answers: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    with session_scope() as db:
        for label in repository.human_labels_stream(db, project_id=project_id):
            for c in comparisons(label):
                # classes: 0 the lower id wins, 1 tie, 2 the higher id wins
                answers.setdefault((label.item_id, c.lo, c.hi), []).append(
                    (c.user_id, 1 - c.outcome))
        old = {u: r.weight for u, r in repository.reliability(db, project_id=project_id).items()}
    estimates = aggregate.dawid_skene(answers)
    weights = {u: w for u, (_, w, _) in estimates.items()}
    moved = set(old) != set(weights) or any(
        abs(old[u] - w) > WEIGHT_TOLERANCE for u, w in weights.items())
    with session_scope(write=True) as db:
        repository.save_reliability(db, project_id=project_id, rows=[
            {"project_id": project_id, "user_id": u, "accuracy": acc, "weight": w,
             "comparisons": n, "computed_at": utcnow()}
            for u, (acc, w, n) in estimates.items()])
        if moved:
            repository.mark_project_stale(db, project_id=project_id)
    return weights


PAGE_REFRESH_LIMIT = 2_000  # about a second of work; the rest goes to a worker


def refresh_for_page(db: Session, *, project_id: int, limit: int = PAGE_REFRESH_LIMIT) -> int:
    """Bring consensus up to date before a page reads it (a GET's read session only), up to
    ``limit`` items; more than that is left to a background task. Returns how many items
    are still stale, for the page to say so.

    The refresh commits in its own transactions; ending this session's read transaction
    afterwards lets the page's next query see them (SQLite keeps a snapshot per read
    transaction).
    """
    done = refresh(project_id, limit=limit, reestimate=False)
    db.commit()
    left = repository.count_stale(db, project_id=project_id)
    # Items recomputed here used the weights last estimated; a worker re-estimates them.
    weighted = db.get(Project, project_id).weighting == Weighting.RELIABILITY
    if (left or (weighted and done)) and \
            time.monotonic() - _sent.get(project_id, -1e9) > RESEND_S:
        from app.core.celery import get_celery

        _sent[project_id] = time.monotonic()
        get_celery().send_task("consensus.refresh", args=[project_id])
    return left


# When this process last asked a worker to refresh a project, so page views don't queue a
# task each; the task itself is idempotent. Kept per process on purpose: with N web
# processes a project gets at most N nudges per RESEND_S, and each recomputes only what
# is still stale then (refresh claims items by clearing their flag in the database).
_sent: dict[int, float] = {}
RESEND_S = 30.0


def set_gold(db: Session, *, project: Project, item_id: int, ranking: list[int] | None) -> Item:
    """Mark an item gold with its known answer (response ids best first), or unmark it."""
    item = items.get_item(db, item_id=item_id)
    if item is None or item.project_id != project.id:
        raise NotFound("No such item in this project.")
    originals = [r.id for r in items.original_responses(db, item_id=item_id)]
    if ranking is not None and sorted(ranking) != sorted(originals):
        raise BadRequest("A gold answer orders every response of the item exactly once.")
    item.gold = {"ranking": list(ranking)} if ranking is not None else None
    item.is_gold = ranking is not None
    item.consensus_stale = True
    db.flush()
    items.refresh_in_queue(db, where=Item.id == item_id)  # gold leaves the human queue
    db.expire(item, ["in_queue"])
    return item


def set_gold_by_letters(db: Session, *, project: Project, external_id: str,
                        answer: str) -> Item:
    """The gold page's form: an item's external id and its responses best first as letters
    ("B" for the best of two, "C,A,B" for a full order); empty unmarks the item."""
    item = repository.item_by_external_id(db, project_id=project.id,
                                          external_id=external_id.strip())
    if item is None:
        raise NotFound(f"No item with external id {external_id.strip()!r} in this project.")
    originals = [r.id for r in items.original_responses(db, item_id=item.id)]
    ranking = ranking_from_letters(originals, answer)
    return set_gold(db, project=project, item_id=item.id, ranking=ranking or None)


def ranking_from_letters(originals: list[int], answer: str) -> list[int]:
    """"C,A" or "C > A" -> response ids best first; the responses not named follow in their
    order. Empty gives an empty list."""
    letters = [x.strip().upper() for x in answer.replace(">", ",").split(",") if x.strip()]
    if not letters:
        return []
    index = {chr(ord("A") + n): rid for n, rid in enumerate(originals)}
    if any(x not in index for x in letters) or len(set(letters)) != len(letters):
        raise BadRequest(f"Name responses by letter, A to {chr(ord('A') + len(originals) - 1)}, "
                         "each once.")
    ranking = [index[x] for x in letters]
    return ranking + [rid for rid in originals if rid not in ranking]


def list_gold(db: Session, *, project: Project) -> list[tuple[Item, list[Row]]]:
    return [(item, items.original_responses(db, item_id=item.id))
            for item in repository.gold_items(db, project_id=project.id)]


@dataclass(frozen=True)
class AdjudicationTask:
    consensus: ItemConsensus
    item: Item
    responses: list[Row]  # items.original_responses
    labels: list[tuple[HumanLabel, User | None]]
    remaining: int


def next_adjudication(db: Session, *, project: Project, skip: list[int] | None = None
                      ) -> AdjudicationTask | None:
    consensus = repository.next_to_adjudicate(db, project_id=project.id, skip=skip or [])
    if consensus is None:
        return None
    item = items.get_item(db, item_id=consensus.item_id)
    if item is None:
        raise NotFound("That item is gone.")
    responses = items.original_responses(db, item_id=item.id)
    (inputs,) = repository.inputs_for(db, item_ids=[item.id])
    labels = [(lab, db.get(User, lab.user_id)) for lab in inputs.labels]
    return AdjudicationTask(consensus=consensus, item=item, responses=responses, labels=labels,
                            remaining=repository.count_to_adjudicate(db, project_id=project.id))


def adjudicate(db: Session, *, project: Project, user: User, item_id: int,
               idempotency_key: str, ranking: list[int] | str | None, comment: str = ""
               ) -> Adjudication:
    """Record a reviewer's decision on a conflicted item: response ids best first, or
    letters ("B,A"); None means a tie."""
    # Under the item's lock: a double submit waits here and then finds the first one, and
    # a background refresh of the same item cannot interleave with ours.
    item = items.lock_item(db, item_id=item_id)
    if item is None or item.project_id != project.id:
        raise NotFound("No such item in this project.")
    earlier = repository.adjudication_by_key(db, key=idempotency_key)
    if earlier is not None:
        if earlier.reviewer_id != user.id:
            raise Conflict("This submission key belongs to someone else.")
        return earlier
    originals = [r.id for r in items.original_responses(db, item_id=item_id)]
    if isinstance(ranking, str):
        ranking = ranking_from_letters(originals, ranking)
    if ranking is not None and sorted(ranking) != sorted(originals):
        raise BadRequest("The decision must order every response of the item exactly once.")
    adjudication = Adjudication(project_id=project.id, item_id=item_id, reviewer_id=user.id,
                                idempotency_key=idempotency_key, ranking=ranking,
                                comment=comment.strip())
    db.add(adjudication)
    db.flush()
    recompute_now(db, project=project, item_ids=[item_id])
    return adjudication
