"""Stream a project's labels as preference pairs, batch by batch, in constant memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.exports import repository
from app.exports.formats import (
    ALL_SOURCES,
    ExportFormat,
    LabelSource,
    Pair,
    edit_pair,
    pairs_of,
    ranking_pairs,
    row,
)
from app.models import Response

BATCH = 500


@dataclass
class ExportStats:
    labels: int = 0
    pairs: int = 0
    ties_left_out: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


def iter_rows(*, project_id: int, fmt: ExportFormat, stats: ExportStats | None = None,
              sources: frozenset[LabelSource] = ALL_SOURCES) -> Iterator[dict]:
    """Yield export rows; each batch is read in its own short transaction."""
    stats = stats if stats is not None else ExportStats()
    if LabelSource.HUMAN in sources:
        yield from _human_rows(project_id, fmt, stats)
    if sources & {LabelSource.AI_ACCEPTED, LabelSource.AI_REVIEWED}:
        yield from _ai_rows(project_id, fmt, stats, sources)


def _batches(fetch: Callable[[Session, int], list[tuple]]
             ) -> Iterator[tuple[list[tuple], dict[int, Response]]]:
    """Keyset pages of (label, item, ...) rows with their items' responses; each page is read
    in its own short transaction, so memory stays flat however large the export."""
    after = 0
    while True:
        with session_scope() as db:
            batch = fetch(db, after)
            if not batch:
                return
            responses = repository.responses_by_id(
                db, item_ids=sorted({row[1].id for row in batch})
            )
        yield batch, responses
        after = batch[-1][0].id


def _human_rows(project_id: int, fmt: ExportFormat, stats: ExportStats) -> Iterator[dict]:
    def fetch(db: Session, after: int) -> list[tuple]:
        return repository.label_batch(db, project_id=project_id, after_id=after, limit=BATCH)

    for batch, responses in _batches(fetch):
        for label, item in batch:
            stats.labels += 1
            pairs, tie = pairs_of(label, responses)
            stats.ties_left_out += tie
            yield from _emit(item.prompt, pairs, fmt, stats, LabelSource.HUMAN)


def _ai_rows(project_id: int, fmt: ExportFormat, stats: ExportStats,
             sources: frozenset[LabelSource]) -> Iterator[dict]:
    """AI labels: accepted ones as the judge ranked them, reviewed ones as the reviewer
    decided (an edit is chosen over the response it came from). Labels routed to humans,
    and review samples nobody has reviewed yet, are left out."""
    def fetch(db: Session, after: int) -> list[tuple]:
        return repository.ai_label_batch(db, project_id=project_id, after_id=after, limit=BATCH)

    for batch, responses in _batches(fetch):
        for label, item, review in batch:
            if review is not None:
                source, ranking = LabelSource.AI_REVIEWED, review.ranking
            elif label.route == "accepted":
                source, ranking = LabelSource.AI_ACCEPTED, label.ranking or []
            else:
                continue
            if source not in sources:
                continue
            stats.labels += 1
            pairs = ranking_pairs(ranking, responses)
            if review is not None and (edit := edit_pair(review.edited_response_id,
                                                         responses)) is not None:
                pairs.insert(0, edit)
            yield from _emit(item.prompt, pairs, fmt, stats, source)


def _emit(prompt, pairs: list[Pair], fmt: ExportFormat, stats: ExportStats,  # noqa: ANN001
          source: LabelSource) -> Iterator[dict]:
    for pair in pairs:
        stats.pairs += 1
        stats.by_source[source] = stats.by_source.get(source, 0) + 1
        yield row(prompt, pair, fmt)


def iter_jsonl(*, project_id: int, fmt: ExportFormat, stats: ExportStats | None = None,
               sources: frozenset[LabelSource] = ALL_SOURCES) -> Iterator[bytes]:
    """JSONL bytes in chunks of about 64 KB, for a streamed HTTP response or a file."""
    buf: list[str] = []
    size = 0
    for r in iter_rows(project_id=project_id, fmt=fmt, stats=stats, sources=sources):
        line = json.dumps(r, ensure_ascii=False) + "\n"
        buf.append(line)
        size += len(line)
        if size >= 65536:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


def export_stats(*, project_id: int) -> ExportStats:
    """Count what an export would hold, without building it."""
    stats = ExportStats()
    for _ in iter_rows(project_id=project_id, fmt=ExportFormat.STANDARD, stats=stats):
        pass
    return stats
