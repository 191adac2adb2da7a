"""Turn labels into preference pairs, in TRL's standard and conversational formats."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.items.chat import prompt_messages, prompt_text
from app.models import HumanLabel, Response


class ExportFormat(StrEnum):
    STANDARD = "standard"  # prompt / chosen / rejected as strings
    CONVERSATIONAL = "conversational"  # the same as lists of chat messages


class LabelSource(StrEnum):
    HUMAN = "human"  # labels people gave in the labeling queue
    AI_ACCEPTED = "ai_accepted"  # confident, consistent AI labels nobody has reviewed
    AI_REVIEWED = "ai_reviewed"  # AI labels a reviewer approved, overrode or edited


ALL_SOURCES = frozenset(LabelSource)


def parse_sources(value: str | None) -> frozenset[LabelSource]:
    """``all`` or a comma list of sources; an unknown name is a clear error."""
    if not value or value == "all":
        return ALL_SOURCES
    try:
        return frozenset(LabelSource(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"source must be 'all' or some of {', '.join(ALL_SOURCES)}") from None


def edit_pair(edited_id: int | None, responses: dict[int, Response]) -> Pair | None:
    """A human edit, chosen over the response it came from."""
    edited = responses.get(edited_id or 0)
    parent = responses.get(edited.parent_response_id or 0) if edited else None
    return Pair(edited, parent) if edited and parent else None


def ranking_pairs(ranking: list[int], responses: dict[int, Response]) -> list[Pair]:
    ranked = [responses[i] for i in ranking if i in responses]
    return [Pair(ranked[i], ranked[j]) for i in range(len(ranked))
            for j in range(i + 1, len(ranked))]


@dataclass(frozen=True)
class Pair:
    chosen: Response
    rejected: Response


def pairs_of(label: HumanLabel, responses: dict[int, Response]) -> tuple[list[Pair], bool]:
    """The ordered pairs a label states, and whether it was a tie (which yields none).

    A ranking gives every ordered pair; a human edit is chosen over the response it came
    from; ratings give a pair for every two responses rated differently.
    """
    pairs: list[Pair] = []
    if label.choice is not None:
        if label.choice == "tie":
            return [], True
        a, b = responses.get(label.response_a_id or 0), responses.get(label.response_b_id or 0)
        if a and b:
            pairs.append(Pair(a, b) if label.choice == "a" else Pair(b, a))
    elif label.ranking:
        pairs.extend(ranking_pairs(label.ranking, responses))
    else:
        if (edit := edit_pair(label.edited_response_id, responses)) is not None:
            pairs.append(edit)
        rated = sorted(((int(rid), v) for rid, v in (label.ratings or {}).items()),
                       key=lambda t: -t[1])
        for i, (hi, hv) in enumerate(rated):
            for lo, lv in rated[i + 1:]:
                if hv > lv and hi in responses and lo in responses:
                    pairs.append(Pair(responses[hi], responses[lo]))
    return pairs, False


def row(prompt: Any, pair: Pair, fmt: ExportFormat) -> dict[str, Any]:
    if fmt == ExportFormat.CONVERSATIONAL:
        return {
            "prompt": prompt_messages(prompt),
            "chosen": [{"role": "assistant", "content": pair.chosen.text}],
            "rejected": [{"role": "assistant", "content": pair.rejected.text}],
        }
    return {"prompt": prompt_text(prompt), "chosen": pair.chosen.text,
            "rejected": pair.rejected.text}


def rows_for(prompt: Any, label: HumanLabel, responses: dict[int, Response],
             fmt: ExportFormat) -> Iterator[dict[str, Any]]:
    pairs, _ = pairs_of(label, responses)
    for pair in pairs:
        yield row(prompt, pair, fmt)
