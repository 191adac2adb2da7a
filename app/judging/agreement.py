"""How well the judge agrees with people: percent agreement and Cohen's kappa, overall and
per rule, on items that have both a human label and an AI label."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import AiLabel, HumanLabel
from app.reviewing.repository import latest_ai_labels


@dataclass(frozen=True)
class Agreement:
    n: int
    percent: float | None
    kappa: float | None


def cohen(pairs: list[tuple[str, str]]) -> Agreement:
    """Agreement of two raters over categorical verdicts (judge, human)."""
    n = len(pairs)
    if not n:
        return Agreement(0, None, None)
    observed = sum(a == b for a, b in pairs) / n
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(left[c] * right[c] for c in set(left) | set(right)) / (n * n)
    kappa = None if expected >= 1 else (observed - expected) / (1 - expected)
    return Agreement(n, observed, kappa)


@dataclass
class JudgeReport:
    overall: Agreement
    per_rule: dict[str, Agreement] = field(default_factory=dict)
    ai_labels: int = 0
    inconsistent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def inconsistency_rate(self) -> float | None:
        return self.inconsistent / self.ai_labels if self.ai_labels else None


def judge_report(db: Session, *, project_id: int) -> JudgeReport:
    """Judge versus humans on the items both labeled (each human label counts once)."""
    latest = {label.item_id: label for label in db.scalars(
        select(AiLabel).where(AiLabel.id.in_(latest_ai_labels(project_id))))}
    choices: list[tuple[str, str]] = []
    rules: dict[str, list[tuple[str, str]]] = {}
    for human in db.scalars(select(HumanLabel).where(HumanLabel.project_id == project_id,
                                                     HumanLabel.item_id.in_(list(latest)))):
        ai = latest[human.item_id]
        human_best = _human_best(human)
        if human_best is not None and ai.ranking and human_best in ai.ranking:
            judge_says = "first" if ai.ranking[0] == ai.response_a_id else "second"
            human_says = "first" if human_best == ai.response_a_id else "second"
            choices.append((judge_says, human_says))
        broken = {rid: set(keys) for rid, keys in (human.rule_violations or {}).items()}
        for rid, verdicts in (ai.rule_verdicts or {}).items():
            for key, p_follows in verdicts.items():
                judge_rule = "breaks" if p_follows < 0.5 else "follows"
                human_rule = "breaks" if key in broken.get(rid, set()) else "follows"
                rules.setdefault(key, []).append((judge_rule, human_rule))
    totals = db.execute(select(
        func.count(AiLabel.id), func.count(AiLabel.id).filter(~AiLabel.consistent),
        func.coalesce(func.sum(AiLabel.prompt_tokens), 0),
        func.coalesce(func.sum(AiLabel.completion_tokens), 0),
        func.coalesce(func.sum(AiLabel.latency_ms), 0),
    ).where(AiLabel.project_id == project_id)).one()
    return JudgeReport(overall=cohen(choices),
                       per_rule={k: cohen(v) for k, v in sorted(rules.items())},
                       ai_labels=totals[0], inconsistent=totals[1], prompt_tokens=int(totals[2]),
                       completion_tokens=int(totals[3]), seconds=int(totals[4]) / 1000)


def _human_best(label: HumanLabel) -> int | None:
    if label.choice == "a":
        return label.response_a_id
    if label.choice == "b":
        return label.response_b_id
    if label.ranking:
        return label.ranking[0]
    if label.ratings:
        best = max(label.ratings.items(), key=lambda kv: kv[1])
        if list(label.ratings.values()).count(best[1]) == 1:
            return int(best[0])
    return None  # a tie says nothing about which is better
