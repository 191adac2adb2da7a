"""Stream a project's decided preferences as JSONL, batch by batch, in constant memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.consensus import service as consensus
from app.exports.filters import ALL_SOURCES, ExportFilters, LabelSource
from app.exports.formats import ROWS, ExportFormat
from app.exports.pairs import PAIR_FORMATS, PairRows, iter_pair_rows
from app.exports.records import Tally, iter_records
from app.models import HumanLabel, ItemConsensus
from app.models.consensus import ConsensusStatus

# Each chunk is a hop from the thread pool to the event loop and through the middleware: 1 MB
# chunks make 16 times fewer than 64 KB ones. The first goes out at 64 KB, for an early
# first byte.
FIRST_CHUNK, CHUNK = 1 << 16, 1 << 20


def iter_jsonl(*, project_id: int, fmt: ExportFormat, margin: bool = False,
               sources: frozenset[LabelSource] = ALL_SOURCES,
               tally: Tally | None = None) -> Iterator[bytes]:
    """JSONL bytes in chunks of about 1 MB, for a streamed HTTP response."""
    if fmt == ExportFormat.TANDEM:
        raise ValueError("the full-fidelity format is made as a snapshot")
    consensus.refresh(project_id)
    filters = ExportFilters(sources=sorted(sources))
    if fmt in PAIR_FORMATS:
        yield from _pair_jsonl(project_id=project_id, fmt=fmt, margin=margin, filters=filters,
                               tally=tally)
        return
    rows_of = ROWS[fmt]
    buf = bytearray()
    for batch in iter_records(project_id=project_id, filters=filters, tally=tally):
        for record in batch:
            for row in rows_of(record, margin):
                buf += orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
            if len(buf) >= CHUNK:
                yield bytes(buf)
                buf.clear()
    if buf:
        yield bytes(buf)


def _pair_jsonl(*, project_id: int, fmt: ExportFormat, margin: bool, filters: ExportFilters,
                tally: Tally | None) -> Iterator[bytes]:
    rows = PairRows(fmt, margin, fingerprints=False)
    line = rows.line
    buf: list[bytes] = []
    size, limit = 0, FIRST_CHUNK
    for batch in iter_pair_rows(project_id=project_id, filters=filters, rows=rows, tally=tally):
        for _, item_rows in batch:
            for row in item_rows:
                encoded = line(row)
                buf.append(encoded)
                size += len(encoded)
            if size >= limit:
                yield b"".join(buf)
                buf.clear()
                size, limit = 0, CHUNK
    if buf:
        yield b"".join(buf)


@dataclass
class ExportStats:
    labels: int = 0
    pairs: int = 0
    ties_left_out: int = 0
    awaiting_adjudication: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


def export_stats(db: Session, *, project_id: int) -> ExportStats:
    """What an export of everything would hold, counted from the consensus rows."""
    stats = ExportStats(labels=db.scalar(select(func.count()).select_from(HumanLabel).where(
        HumanLabel.project_id == project_id)) or 0)
    c = ItemConsensus
    for status, source, n, pairs in db.execute(
        select(c.status, c.source, func.count(), func.sum(c.pair_count))
        .where(c.project_id == project_id).group_by(c.status, c.source)
    ):
        if status == ConsensusStatus.DECIDED:
            stats.pairs += pairs or 0
            stats.by_source[source] = stats.by_source.get(source, 0) + (pairs or 0)
        elif status == ConsensusStatus.TIE:
            stats.ties_left_out += n
        elif status in (ConsensusStatus.CONFLICT, ConsensusStatus.INTRANSITIVE):
            stats.awaiting_adjudication += n
    return stats
