"""From several labels to one preference: pure functions, no database.

Every label becomes comparisons of unordered response pairs (a pairwise choice is one, a
ranking of n responses gives n(n-1)/2, ratings give one per pair with equal ratings a tie).
Per pair the (weighted) majority wins; the item's order comes from Bradley–Terry over the
soft wins; agreement is the share of comparison weight on the majority side.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.judging.scoring import PairVerdict, bradley_terry
from app.models.consensus import ConsensusStatus

# A decision without a stated strength (a ranking, a reviewer's order) counts as this margin;
# a pairwise "slightly better" is 1 and "clearly better" is 2.
PLAIN_MARGIN = 1.0


@dataclass(frozen=True)
class Comparison:
    """One labeler's verdict on one unordered pair of responses (lo < hi by id)."""

    user_id: int
    lo: int
    hi: int
    outcome: int  # +1 lo is better, 0 tie, -1 hi is better
    strength: float = PLAIN_MARGIN


@dataclass
class Outcome:
    status: ConsensusStatus
    ranking: list[int] | None = None
    # [chosen, rejected, P(chosen better), margin]
    pairs: list[list[float | int]] = field(default_factory=list)
    agreement: float | None = None
    cycle: list[int] | None = None


def ordered(lo: int, hi: int, outcome: int, user_id: int, strength: float) -> Comparison:
    """A comparison with its pair put in id order (the outcome flipped to match)."""
    if lo > hi:
        lo, hi, outcome = hi, lo, -outcome
    return Comparison(user_id=user_id, lo=lo, hi=hi, outcome=outcome, strength=strength)


def from_choice(user_id: int, a: int, b: int, choice: str, strength: int | None
                ) -> list[Comparison]:
    outcome = {"a": 1, "b": -1}.get(choice, 0)
    return [ordered(a, b, outcome, user_id, float(strength or PLAIN_MARGIN) if outcome else 0)]


def from_ranking(user_id: int, ranking: Sequence[int]) -> list[Comparison]:
    return [ordered(better, worse, 1, user_id, PLAIN_MARGIN)
            for better, worse in itertools.combinations(ranking, 2)]


def from_ratings(user_id: int, ratings: Mapping[int, int]) -> list[Comparison]:
    """Every two rated responses: the higher rating wins; a difference of 2+ is "clearly"."""
    out = []
    for (a, ra), (b, rb) in itertools.combinations(sorted(ratings.items()), 2):
        diff = ra - rb
        out.append(ordered(a, b, (diff > 0) - (diff < 0), user_id, float(min(abs(diff), 2))))
    return out


def ranking_pairs(ranking: Sequence[int], p: float = 1.0,
                  margin: float = PLAIN_MARGIN) -> list[list[float | int]]:
    """Every ordered pair a ranking states, each with the same probability and margin."""
    return [[better, worse, p, margin] for better, worse in itertools.combinations(ranking, 2)]


@dataclass
class _Tally:
    lo_wins: float = 0.0
    ties: float = 0.0
    hi_wins: float = 0.0
    signed_strength: float = 0.0  # weighted, positive toward lo

    @property
    def total(self) -> float:
        return self.lo_wins + self.ties + self.hi_wins

    @property
    def majority(self) -> int:
        if self.lo_wins > self.hi_wins and self.lo_wins >= self.ties:
            return 1
        if self.hi_wins > self.lo_wins and self.hi_wins >= self.ties:
            return -1
        return 0

    @property
    def majority_weight(self) -> float:
        return max(self.lo_wins, self.ties, self.hi_wins)


def aggregate(responses: Sequence[int], comparisons: Iterable[Comparison], *, labels: int,
              threshold: float, weights: Mapping[int, float] | None = None) -> Outcome:
    """The consensus of ``labels`` human labels given as comparisons.

    ``weights`` (user id -> weight, default 1) is how reliability weighting enters;
    an item with two or more labels whose agreement is under ``threshold`` is a conflict.
    """
    tallies: dict[tuple[int, int], _Tally] = defaultdict(_Tally)
    for c in comparisons:
        w = 1.0 if weights is None else weights.get(c.user_id, 1.0)
        t = tallies[(c.lo, c.hi)]
        if c.outcome > 0:
            t.lo_wins += w
        elif c.outcome < 0:
            t.hi_wins += w
        else:
            t.ties += w
        t.signed_strength += w * c.outcome * c.strength
    tallies = {k: t for k, t in tallies.items() if t.total > 0}
    if not tallies:
        return Outcome(status=ConsensusStatus.PENDING)

    total = sum(t.total for t in tallies.values())
    agreement = (sum(t.majority_weight for t in tallies.values()) / total
                 if labels >= 2 else None)
    judged = [r for r in responses if any(r in k for k in tallies)]
    verdicts = [PairVerdict(a=lo, b=hi, p_a_first=p, p_a_second=p)
                for (lo, hi), t in tallies.items()
                for p in [(t.lo_wins + t.ties / 2) / t.total]]
    if len(judged) == 2:
        # Two responses: Bradley–Terry's order is the majority's (ties keep their order).
        (v,) = verdicts
        p = v.preference
        ranking = [v.a, v.b] if p > 0.5 else [v.b, v.a] if p < 0.5 else list(judged)
    else:
        ranking = bradley_terry(judged, verdicts)
    position = {r: n for n, r in enumerate(ranking)}
    pairs = []
    for (lo, hi), t in sorted(tallies.items(), key=lambda kv: (position[kv[0][0]]
                                                              + position[kv[0][1]], kv[0])):
        if t.majority == 0:
            continue
        chosen, rejected = (lo, hi) if t.majority > 0 else (hi, lo)
        wins = t.lo_wins if t.majority > 0 else t.hi_wins
        p = (wins + t.ties / 2) / t.total
        margin = max(0.0, t.majority * t.signed_strength / t.total)
        pairs.append([chosen, rejected, round(p, 6), round(margin, 6)])
    cycle = find_cycle(judged, {k: t.majority for k, t in tallies.items()})
    if cycle is not None:
        status = ConsensusStatus.INTRANSITIVE
    elif agreement is not None and agreement < threshold:
        status = ConsensusStatus.CONFLICT
    elif not pairs:
        status = ConsensusStatus.TIE
    else:
        status = ConsensusStatus.DECIDED
    return Outcome(status=status, ranking=ranking, pairs=pairs, agreement=agreement,
                   cycle=cycle)


def find_cycle(responses: Sequence[int], majority: Mapping[tuple[int, int], int]
               ) -> list[int] | None:
    """Three responses the majority prefers in a circle (a>b, b>c, c>a), or None."""
    def beats(x: int, y: int) -> bool:
        return majority.get((x, y), 0) > 0 if x < y else majority.get((y, x), 0) < 0

    for a, b, c in itertools.combinations(responses, 3):
        if beats(a, b) and beats(b, c) and beats(c, a):
            return [a, b, c]
        if beats(a, c) and beats(c, b) and beats(b, a):
            return [a, c, b]
    return None


def ai_pairs(ranking: Sequence[int], verdicts: Iterable[Mapping]) -> list[list[float | int]]:
    """An AI label's ordered pairs, each with the judge's probability (both orders
    averaged) and a margin that maps P = 0.5..1 onto 0..2, the scale of human strength."""
    p_first = {}
    for v in verdicts:
        p = (float(v["p_a_first"]) + float(v["p_a_second"])) / 2
        p_first[(v["a"], v["b"])], p_first[(v["b"], v["a"])] = p, 1 - p
    out = []
    for better, worse in itertools.combinations(ranking, 2):
        p = p_first.get((better, worse))
        if p is None:
            continue
        p = max(p, 0.5)  # the ranking may disagree with one pair's odds (BT): no negative margin
        out.append([better, worse, round(p, 6), round(2 * (2 * p - 1), 6)])
    return out


def dawid_skene(answers: Mapping[object, Sequence[tuple[int, int]]], *, classes: int = 3,
                iterations: int = 30) -> dict[int, tuple[float, float, int]]:
    """One-coin Dawid–Skene: each labeler's accuracy, learnt jointly with the true answers.

    ``answers`` maps a question (an item's response pair) to (user id, answer) tuples,
    answers being class indexes. Returns user id -> (accuracy, vote weight, answers given).
    The weight is the log-odds of a correct answer, the optimal vote weight under this
    model; a labeler no better than chance gets 0.
    """
    questions = [q for q, votes in answers.items() if votes]
    users = sorted({u for q in questions for u, _ in answers[q]})
    if not users:
        return {}
    accuracy = {u: 0.7 for u in users}
    prior = [1.0 / classes] * classes
    for _ in range(iterations):
        posts = []
        for q in questions:
            logp = [math.log(max(prior[c], 1e-9)) for c in range(classes)]
            for u, a in answers[q]:
                acc = accuracy[u]
                for c in range(classes):
                    logp[c] += math.log(acc if a == c else (1 - acc) / (classes - 1))
            top = max(logp)
            probs = [math.exp(v - top) for v in logp]
            norm = sum(probs)
            posts.append([p / norm for p in probs])
        correct = defaultdict(float)
        count = defaultdict(int)
        for q, post in zip(questions, posts, strict=True):
            for u, a in answers[q]:
                correct[u] += post[a]
                count[u] += 1
        # Laplace smoothing keeps a labeler with few answers away from 0 or 1.
        accuracy = {u: min(0.99, max(0.01, (correct[u] + 1) / (count[u] + 2))) for u in users}
        prior = [(sum(p[c] for p in posts) + 1) / (len(posts) + classes)
                 for c in range(classes)]
    chance = 1.0 / classes
    return {u: (accuracy[u],
                max(0.0, math.log(accuracy[u] * (classes - 1) / (1 - accuracy[u])))
                if accuracy[u] > chance else 0.0,
                count[u])
            for u in users}
