"""Consensus from several labels: majority, Bradley–Terry, conflicts, cycles, reliability."""

from __future__ import annotations

import random

import pytest

from app.consensus.aggregate import (
    aggregate,
    ai_pairs,
    dawid_skene,
    from_choice,
    from_ranking,
    from_ratings,
)
from app.models.consensus import ConsensusStatus

A, B, C = 11, 12, 13


def test_pairwise_majority_wins_with_its_share_and_mean_strength() -> None:
    comps = (from_choice(1, A, B, "a", 2) + from_choice(2, A, B, "a", 1)
             + from_choice(3, A, B, "b", 1))
    out = aggregate([A, B], comps, labels=3, threshold=0.6)
    assert out.status == ConsensusStatus.DECIDED
    assert out.ranking == [A, B]
    # two of three prefer A; margin = (2 + 1 - 1) / 3 in "slightly/clearly" units
    assert out.pairs == [[A, B, pytest.approx(2 / 3), pytest.approx(2 / 3)]]
    assert out.agreement == pytest.approx(2 / 3)


def test_two_labelers_who_disagree_are_a_conflict() -> None:
    comps = from_choice(1, A, B, "a", 2) + from_choice(2, A, B, "b", 2)
    out = aggregate([A, B], comps, labels=2, threshold=0.6)
    assert out.status == ConsensusStatus.CONFLICT and out.agreement == 0.5


def test_a_single_label_has_no_agreement_and_is_decided() -> None:
    out = aggregate([A, B], from_choice(1, A, B, "b", 1), labels=1, threshold=0.9)
    assert out.status == ConsensusStatus.DECIDED and out.agreement is None
    assert out.pairs == [[B, A, 1.0, 1.0]]


def test_a_tie_majority_gives_no_pair() -> None:
    comps = (from_choice(1, A, B, "tie", None) + from_choice(2, A, B, "tie", None)
             + from_choice(3, A, B, "a", 1))
    out = aggregate([A, B], comps, labels=3, threshold=0.6)
    assert out.status == ConsensusStatus.TIE and out.pairs == []


def test_rankings_aggregate_by_bradley_terry() -> None:
    comps = (from_ranking(1, [C, A, B]) + from_ranking(2, [C, B, A])
             + from_ranking(3, [A, C, B]))
    out = aggregate([A, B, C], comps, labels=3, threshold=0.5)
    assert out.ranking == [C, A, B]
    assert {tuple(p[:2]) for p in out.pairs} == {(C, A), (A, B), (C, B)}
    # C>A by 2 of 3, A>B by 2 of 3, C>B by 3 of 3: agreement (2+2+3)/9
    assert out.agreement == pytest.approx(7 / 9)


def test_a_majority_running_in_a_circle_is_intransitive() -> None:
    comps = (from_ranking(1, [A, B, C]) + from_ranking(2, [B, C, A])
             + from_ranking(3, [C, A, B]))
    out = aggregate([A, B, C], comps, labels=3, threshold=0.5)
    assert out.status == ConsensusStatus.INTRANSITIVE
    assert set(out.cycle) == {A, B, C}


def test_ratings_give_pairs_and_ties() -> None:
    comps = from_ratings(1, {A: 6, B: 2, C: 6})
    assert {(c.lo, c.hi, c.outcome, c.strength) for c in comps} == {
        (A, B, 1, 2.0), (A, C, 0, 0.0), (B, C, -1, 2.0)}


def test_ai_pairs_carry_the_judges_probability_as_margin() -> None:
    pairs = ai_pairs([B, A], [{"a": A, "b": B, "p_a_first": 0.1, "p_a_second": 0.3}])
    assert pairs == [[B, A, pytest.approx(0.8), pytest.approx(1.2)]]


def test_reliability_weighting_lets_careful_labelers_outvote_careless_ones() -> None:
    rng = random.Random(7)
    truth = {q: rng.choice([0, 2]) for q in range(60)}
    answers: dict[int, list[tuple[int, int]]] = {}
    for q, t in truth.items():
        votes = [(1, t), (2, t if rng.random() < 0.95 else 2 - t)]
        votes += [(u, rng.choice([0, 2])) for u in (3, 4)]  # two labelers clicking at random
        answers[q] = votes
    estimates = dawid_skene(answers)
    acc = {u: a for u, (a, _, _) in estimates.items()}
    weight = {u: w for u, (_, w, _) in estimates.items()}
    assert acc[1] > 0.9 and acc[2] > 0.85
    assert acc[3] < 0.7 and acc[4] < 0.7
    assert weight[1] > 2 * max(weight[3], weight[4])
    # An item where the two careless labelers outvote one careful one:
    comps = (from_choice(1, A, B, "a", 1) + from_choice(3, A, B, "b", 1)
             + from_choice(4, A, B, "b", 1))
    plain = aggregate([A, B], comps, labels=3, threshold=0.0)
    weighted = aggregate([A, B], comps, labels=3, threshold=0.0, weights=weight)
    assert plain.ranking == [B, A]
    assert weighted.ranking == [A, B]
