"""From the judge's odds to a verdict: both orders combined, rankings aggregated, routed."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PairVerdict:
    a: int  # response ids
    b: int
    p_a_first: float  # P(a better) with a shown first
    p_a_second: float  # P(a better) with a shown second

    @property
    def preference(self) -> float:
        """P(a better), the two orders averaged, so position bias cancels out."""
        return (self.p_a_first + self.p_a_second) / 2

    @property
    def consistent(self) -> bool:
        """Both orders name the same winner (a tie at exactly 0.5 counts as no verdict)."""
        return (self.p_a_first - 0.5) * (self.p_a_second - 0.5) > 0

    @property
    def confidence(self) -> float:
        return max(self.preference, 1 - self.preference)


def combine(a: int, b: int, p_first_when_a_first: float,
            p_first_when_b_first: float) -> PairVerdict:
    """Odds of "the first response is better" in each order -> one verdict on (a, b)."""
    return PairVerdict(a=a, b=b, p_a_first=p_first_when_a_first,
                       p_a_second=1 - p_first_when_b_first)


def bradley_terry(ids: list[int], pairs: list[PairVerdict], iterations: int = 200) -> list[int]:
    """Order responses best first from soft pairwise wins (Bradley–Terry, MM updates)."""
    strength = {i: 1.0 for i in ids}
    wins = {i: 0.0 for i in ids}
    for p in pairs:
        wins[p.a] += p.preference
        wins[p.b] += 1 - p.preference
    for _ in range(iterations):
        updated = {}
        for i in ids:
            denom = sum(1 / (strength[p.a] + strength[p.b])
                        for p in pairs if i in (p.a, p.b))
            updated[i] = max(wins[i], 1e-6) / denom if denom else strength[i]
        norm = math.fsum(updated.values()) / len(ids)
        strength = {i: v / norm for i, v in updated.items()}
    return sorted(ids, key=lambda i: (-strength[i], ids.index(i)))


def route(*, consistent: bool, confidence: float, threshold: float, review_fraction: float,
          run_id: int, item_id: int) -> str:
    """accepted | review | human. The review sample is a hash, so a re-run routes the same."""
    if not consistent or confidence < threshold:
        return "human"
    digest = hashlib.sha256(f"{run_id}:{item_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return "review" if draw < review_fraction else "accepted"
