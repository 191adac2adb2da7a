"""The numbers behind the analytics page: agreement between labelers, each labeler's work
and habits, the judge against people, and where labels come from over time."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy.orm import Session

from app.analytics import repository
from app.analytics.agreement import AgreementSummary, summarize
from app.consensus.aggregate import Comparison, from_choice, from_ranking, from_ratings
from app.consensus.repository import consensus_counts
from app.judging.agreement import JudgeReport, judge_report
from app.labeling.service import Progress, project_progress
from app.models import Project, User
from app.models.projects import TaskType

MAX_DAYS = 60


@dataclass
class LabelerStats:
    user_id: int
    name: str = ""
    labels: int = 0
    median_seconds: float | None = None
    per_hour: float | None = None  # labels per hour of time spent on items
    agreement: float | None = None  # share of comparisons that match the consensus
    gold_accuracy: float | None = None
    gold_items: int = 0
    first_shown_rate: float | None = None  # picks the first (left) response as best
    tie_rate: float | None = None
    # working state
    times: list[int] = field(default_factory=list)
    agree: list[int] = field(default_factory=lambda: [0, 0])
    gold: list[int] = field(default_factory=lambda: [0, 0])
    first: list[int] = field(default_factory=lambda: [0, 0])
    ties: list[int] = field(default_factory=lambda: [0, 0])


@dataclass
class Analytics:
    task_type: str
    agreement: AgreementSummary
    agreement_level: str
    labelers: list[LabelerStats]
    expected_first_rate: float
    judge: JudgeReport
    judge_by_day: list[tuple[date, float | None, int]]
    sources_by_day: tuple[list[str], dict[str, list[float]]]
    progress: Progress
    consensus: dict[str, int]


def _comparisons(task_type: str, row: tuple) -> list[Comparison]:
    _, _, user_id, choice, strength, a, b, ranking, ratings, _, _ = row
    if choice is not None and a and b:
        return from_choice(user_id, a, b, choice, strength)
    if ranking:
        return from_ranking(user_id, ranking)
    if ratings:
        return from_ratings(user_id, {int(k): int(v) for k, v in ratings.items()})
    return []


def _majority(status: str, pairs: list) -> dict[tuple[int, int], int]:
    """The consensus outcome of each response pair, in the comparisons' orientation."""
    out: dict[tuple[int, int], int] = {}
    for chosen, rejected, _, _ in pairs:
        lo, hi = sorted((chosen, rejected))
        out[(lo, hi)] = 1 if chosen == lo else -1
    return out


def project_analytics(db: Session, *, project: Project) -> Analytics:
    task_type = project.task_type
    first_shown = repository.first_shown(db, project_id=project.id)
    consensus = repository.consensus_rows(db, project_id=project.id)
    gold = repository.gold_answers(db, project_id=project.id)
    majority = {item: _majority(status, pairs) for item, (status, _, _, pairs)
                in consensus.items() if status in ("decided", "tie")}
    gold_outcomes = {item: _majority("decided", [[a, b, 1, 1] for n, a in enumerate(r)
                                                 for b in r[n + 1:]])
                     for item, r in gold.items()}
    units: dict[object, list] = defaultdict(list)
    stats: dict[int, LabelerStats] = {}
    labels_on: dict[int, int] = defaultdict(int)
    rows = list(repository.labels(db, project_id=project.id))
    for row in rows:
        labels_on[row[1]] += 1
    for row in rows:
        _, item_id, user_id, choice, _, _, _, ranking, ratings, time_ms, _ = row
        s = stats.setdefault(user_id, LabelerStats(user_id=user_id))
        s.labels += 1
        s.times.append(time_ms)
        comps = _comparisons(task_type, row)
        if task_type == TaskType.PAIRWISE and choice is not None:
            units[item_id].append(choice)
            s.ties[0] += choice == "tie"
            s.ties[1] += 1
            if choice != "tie":
                s.first[0] += choice == "a"
                s.first[1] += 1
        elif task_type == TaskType.RATE_AND_EDIT and ratings:
            for rid, value in ratings.items():
                units[(item_id, int(rid))].append(int(value))
            best = max(ratings.values())
            s.ties[0] += list(ratings.values()).count(best) > 1
            s.ties[1] += 1
            if list(ratings.values()).count(best) == 1:
                s.first[0] += int(max(ratings, key=ratings.get)) == first_shown.get(item_id)
                s.first[1] += 1
        else:
            for c in comps:
                units[(item_id, c.lo, c.hi)].append(c.outcome)
            if ranking:
                s.first[0] += ranking[0] == first_shown.get(item_id)
                s.first[1] += 1
        if labels_on[item_id] >= 2 and item_id in majority:
            for c in comps:
                want = majority[item_id].get((c.lo, c.hi), 0)
                s.agree[0] += c.outcome == want
                s.agree[1] += 1
        if item_id in gold_outcomes:
            s.gold_items += 1
            for c in comps:
                s.gold[0] += c.outcome == gold_outcomes[item_id].get((c.lo, c.hi), 0)
                s.gold[1] += 1
    names = {u.id: u.name for u in db.query(User).filter(User.id.in_(list(stats)))}
    for s in stats.values():
        s.name = names.get(s.user_id, f"user {s.user_id}")
        s.median_seconds = statistics.median(s.times) / 1000 if s.times else None
        mean_ms = sum(s.times) / len(s.times) if s.times else 0
        s.per_hour = 3_600_000 / mean_ms if mean_ms else None
        s.agreement = s.agree[0] / s.agree[1] if s.agree[1] else None
        s.gold_accuracy = s.gold[0] / s.gold[1] if s.gold[1] else None
        s.first_shown_rate = s.first[0] / s.first[1] if s.first[1] else None
        s.tie_rate = s.ties[0] / s.ties[1] if s.ties[1] else None
    level = "ordinal" if task_type == TaskType.RATE_AND_EDIT else "nominal"
    n_responses = max((len(r) for r in _responses_per_item(consensus)), default=2)
    return Analytics(
        task_type=task_type,
        agreement=summarize(list(units.values()), level),
        agreement_level=level,
        labelers=sorted(stats.values(), key=lambda s: -s.labels),
        expected_first_rate=1 / max(n_responses, 2),
        judge=judge_report(db, project_id=project.id),
        judge_by_day=_judge_by_day(db, project.id, consensus),
        sources_by_day=_sources_by_day(db, project.id),
        progress=project_progress(db, project=project),
        consensus=consensus_counts(db, project_id=project.id),
    )


def _responses_per_item(consensus: dict[int, tuple]) -> list[list[int]]:
    return [ranking for _, _, ranking, _ in consensus.values() if ranking]


def _judge_by_day(db: Session, project_id: int, consensus: dict[int, tuple]
                  ) -> list[tuple[date, float | None, int]]:
    """Per day the AI labels were made: how often the judge's best response is the people's
    (the human consensus, or a reviewer's or an adjudicator's decision)."""
    tally: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for item_id, ranking, day in repository.ai_labels_with_day(db, project_id=project_id):
        c = consensus.get(item_id)
        if not ranking or c is None or c[0] != "decided" or not c[2]:
            continue
        if c[1] not in ("human", "adjudicated", "ai_reviewed", "gold"):
            continue
        tally[day][0] += ranking[0] == c[2][0]
        tally[day][1] += 1
    return [(d, t[0] / t[1] if t[1] else None, t[1]) for d, t in sorted(tally.items())]


def _sources_by_day(db: Session, project_id: int) -> tuple[list[str], dict[str, list[float]]]:
    counts = repository.daily_counts(db, project_id=project_id)
    days = sorted({d for per in counts.values() for d in per})
    if not days:
        return [], {}
    start = max(days[0], days[-1] - timedelta(days=MAX_DAYS - 1))
    span = [start + timedelta(days=n) for n in range((days[-1] - start).days + 1)]
    labels = [d.strftime("%b %d") for d in span]
    return labels, {name: [float(per.get(d, 0)) for d in span] for name, per in counts.items()}
