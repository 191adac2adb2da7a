"""Stream a project's labels as preference pairs, batch by batch, in constant memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from app.core.db import session_scope
from app.exports import repository
from app.exports.formats import ExportFormat, pairs_of, row

BATCH = 500


@dataclass
class ExportStats:
    labels: int = 0
    pairs: int = 0
    ties_left_out: int = 0


def iter_rows(*, project_id: int, fmt: ExportFormat,
              stats: ExportStats | None = None) -> Iterator[dict]:
    """Yield export rows; each batch is read in its own short transaction."""
    stats = stats if stats is not None else ExportStats()
    after = 0
    while True:
        with session_scope() as db:
            batch = repository.label_batch(db, project_id=project_id, after_id=after,
                                           limit=BATCH)
            if not batch:
                return
            responses = repository.responses_by_id(
                db, item_ids=sorted({item.id for _, item in batch})
            )
        for label, item in batch:
            stats.labels += 1
            pairs, tie = pairs_of(label, responses)
            stats.ties_left_out += tie
            for pair in pairs:
                stats.pairs += 1
                yield row(item.prompt, pair, fmt)
        after = batch[-1][0].id


def iter_jsonl(*, project_id: int, fmt: ExportFormat,
               stats: ExportStats | None = None) -> Iterator[bytes]:
    """JSONL bytes in chunks of about 64 KB, for a streamed HTTP response or a file."""
    buf: list[str] = []
    size = 0
    for r in iter_rows(project_id=project_id, fmt=fmt, stats=stats):
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
