"""The pair formats (standard, conversational, OpenAI) made straight from the rows read.

``formats`` says what a row of each format is, as a dict. This module makes the same rows
without the dicts or the ``Record`` objects: each prompt and each response is JSON-encoded
once, and a row's JSONL line (and the sorted-key JSON its fingerprint is taken over) is
joined from those pieces. orjson writes a dict as ``{"key":value,...}``, each value exactly
as it writes that value alone, so the bytes are those of ``orjson.dumps(row)``;
tests/exports/test_pair_rows.py checks that on awkward text. With dicts, a snapshot's
main thread spent about 8.2 us per row of 1M standard pairs from PostgreSQL; with the
pieces, 6.2 (of which 2.3 was the fingerprint's BLAKE2b; XXH3, used since, takes 0.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.db import session_scope
from app.exports.filters import ExportFilters
from app.exports.formats import ExportFormat
from app.exports.records import (
    BATCH,
    Tally,
    _conditions,
    _fetch,
    _json,
    left_out_by_tag,
    rule_set_id_of,
)
from app.items.chat import prompt_messages, prompt_text

# A field of a row: its value (for Parquet), its JSON, and its JSON with sorted keys (for
# the fingerprint; the same bytes for a string).
Part = tuple[Any, bytes, bytes]
# A row: its fields' parts in the format's key order (the margin last, when there is one).
Row = tuple[Part, ...]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class _Shape:
    keys: tuple[str, str, str]  # the prompt's field, the chosen one's, the rejected one's
    prompt: Callable[[Any], Any]  # an item's prompt -> its field's value
    response: Callable[[str], Any]  # a response's text -> the chosen / rejected value
    has_margin: bool


SHAPES = {
    ExportFormat.STANDARD: _Shape(("prompt", "chosen", "rejected"), prompt_text, _text, True),
    ExportFormat.CONVERSATIONAL: _Shape(("prompt", "chosen", "rejected"), prompt_messages,
                                        _assistant, True),
    ExportFormat.OPENAI: _Shape(("input", "preferred_output", "non_preferred_output"),
                                lambda p: {"messages": prompt_messages(p)}, _assistant, False),
}
PAIR_FORMATS = frozenset(SHAPES)


class PairRows:
    """Rows of one pair format, with or without the margin; ``fingerprints`` also makes each
    part's sorted-key JSON (needed by ``sorted_json``)."""

    def __init__(self, fmt: ExportFormat, margin: bool, *, fingerprints: bool) -> None:
        shape = SHAPES[fmt]
        self._shape, self._fingerprints = shape, fingerprints
        self.margin = margin and shape.has_margin
        self.keys = [*shape.keys, "margin"] if self.margin else list(shape.keys)
        # ``{"a":`` ``,"b":`` ... before each value, in the row's order and in sorted order
        self._line = [(b"{" if n == 0 else b",") + orjson.dumps(k) + b":"
                      for n, k in enumerate(self.keys)]
        self._order = sorted(range(len(self.keys)), key=lambda n: self.keys[n])
        self._sorted = [(b"{" if n == 0 else b",") + orjson.dumps(self.keys[i]) + b":"
                        for n, i in enumerate(self._order)]
        self._margins: dict[float, Part] = {}

    def part(self, value: Any) -> Part:
        encoded = orjson.dumps(value)
        if self._fingerprints and not isinstance(value, str):
            return value, encoded, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        return value, encoded, encoded

    def prompt_part(self, prompt: Any) -> Part:
        return self.part(self._shape.prompt(prompt))

    def response_part(self, text: str) -> Part:
        return self.part(self._shape.response(text))

    def margin_part(self, margin: float) -> Part:
        """A margin's part, kept for the next row with the same margin (there are few)."""
        if (part := self._margins.get(margin)) is None:
            part = self.part(margin)
            if margin != 0 and margin == margin:  # 0.0 == -0.0 and NaN != NaN as keys
                self._margins[margin] = part
        return part

    def line(self, row: Row) -> bytes:
        """``orjson.dumps(row, option=OPT_APPEND_NEWLINE)`` of the row as a dict."""
        k = self._line
        if len(row) == 4:
            return b"".join((k[0], row[0][1], k[1], row[1][1], k[2], row[2][1], k[3],
                             row[3][1], b"}\n"))
        return b"".join((k[0], row[0][1], k[1], row[1][1], k[2], row[2][1], b"}\n"))

    def sorted_json(self, row: Row) -> bytes:
        """``orjson.dumps(row, option=OPT_SORT_KEYS)`` of the row as a dict."""
        k, o = self._sorted, self._order
        if len(row) == 4:
            return b"".join((k[0], row[o[0]][2], k[1], row[o[1]][2], k[2], row[o[2]][2],
                             k[3], row[o[3]][2], b"}"))
        return b"".join((k[0], row[o[0]][2], k[1], row[o[1]][2], k[2], row[o[2]][2], b"}"))


def iter_pair_rows(*, project_id: int, filters: ExportFilters, rows: PairRows,
                   tally: Tally | None = None, batch: int = BATCH
                   ) -> Iterator[Iterator[tuple[Any, list[Row]]]]:
    """Batches of decided items in id order, each item as (its prompt, its rows): the rows
    ``formats.ROWS[fmt]`` makes of it, as parts. Each batch is read in its own transaction,
    ahead of the caller (``records._fetch``); it counts into ``tally`` as it is consumed."""
    tally = tally if tally is not None else Tally()
    with session_scope() as db:
        rule_set_id = rule_set_id_of(db, project_id=project_id,
                                     version=filters.rule_set_version)
        tally.filtered_out += left_out_by_tag(db, project_id=project_id, filters=filters,
                                              rule_set_id=rule_set_id)
    cond = _conditions(project_id, filters, rule_set_id)  # the tag filter too, in SQL
    for items, responses in _fetch(project_id, cond, batch, lean=True):
        yield _rows_of(items, responses, rows, tally)


def _rows_of(items: list[tuple], responses: list[tuple], rows: PairRows,
             tally: Tally) -> Iterator[tuple[Any, list[Row]]]:
    """One batch's items as (prompt, rows), one item at a time (so that only one item's
    encoded text is held at once), counted into ``tally`` once all are through. The hot
    loop of an export: it keeps to local names and the calls it cannot avoid."""
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    prompt_part, response_part = rows.prompt_part, rows.response_part
    margin_part = rows.margin_part if rows.margin else None
    by_id = {r[0]: r for r in responses}  # response id -> (id, item_id, text) as read
    by_source = tally.by_source
    pairs_seen = 0
    for item_id, source, pairs_json, prompt_json in items:
        try:
            pairs, prompt = loads(pairs_json), loads(prompt_json)
        except decode_error:  # what only Python's json reads (NaN, huge integers)
            pairs, prompt = _json(pairs_json), _json(prompt_json)
        pairs_seen += len(pairs)
        by_source[source] = by_source.get(source, 0) + len(pairs)
        p = prompt_part(prompt)
        parts: dict[int, Part] = {}  # a response's parts, made when a pair first uses it
        item_rows: list[Row] = []
        for chosen, rejected, probability, m in pairs:
            a, b = by_id.get(chosen), by_id.get(rejected)
            if a is None or b is None or a[1] != item_id or b[1] != item_id:
                continue  # as formats: only the item's own responses
            float(probability)  # as formats, which read it (and so fail on a bad one)
            m = float(m)
            if (ca := parts.get(chosen)) is None:
                ca = parts[chosen] = response_part(a[2])
            if (cb := parts.get(rejected)) is None:
                cb = parts[rejected] = response_part(b[2])
            if margin_part is None:
                item_rows.append((p, ca, cb))
            else:
                item_rows.append((p, ca, cb, margin_part(m)))
        yield prompt, item_rows
    tally.items += len(items)
    tally.pairs += pairs_seen
