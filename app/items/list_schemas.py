"""The item list's query: its filters and its page cursor, parsed and checked."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from app.core.errors import BadRequest
from app.items.tags import MAX_TAG_CHARS
from app.models.consensus import ConsensusSource

PAGE_SIZE, MAX_PAGE_SIZE = 50, 200


class ItemStatus(StrEnum):
    TODO = "todo"  # no label, no live lease
    IN_PROGRESS = "in_progress"  # some labels, or a labeler holds it now
    DONE = "done"  # the project's k labels
    CONFLICT = "conflict"  # the labels disagree (or are intransitive): for adjudication
    GOLD = "gold"  # a gold item (known answer)


@dataclass(frozen=True)
class Cursor:
    """A page boundary: the items after (or before) this item id, in id order."""

    item_id: int
    before: bool = False

    def encode(self) -> str:
        raw = f"{'b' if self.before else 'a'}:{self.item_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """A cursor from a page link; anything that is not one of ours is a 400."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            kind, _, number = raw.partition(":")
            item_id = int(number)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadRequest("That page cursor is not valid; start again from the first page."
                             ) from None
        if kind not in ("a", "b") or not number.isdigit() or item_id >= 2**31:
            raise BadRequest("That page cursor is not valid; start again from the first page.")
        return cls(item_id=item_id, before=kind == "b")


@dataclass(frozen=True)
class ItemQuery:
    status: ItemStatus | None = None
    prefix: str | None = None  # external id prefix
    round: int | None = None
    tag: str | None = None
    source: ConsensusSource | None = None
    cursor: Cursor | None = None
    limit: int = PAGE_SIZE

    @property
    def filtered(self) -> bool:
        return any(v is not None for v in (self.status, self.prefix, self.round, self.tag,
                                           self.source))

    def filter_params(self) -> dict[str, str]:
        """The filters as query parameters (for page links), unset ones left out."""
        out = {"status": self.status, "prefix": self.prefix, "round": self.round,
               "tag": self.tag, "source": self.source}
        if self.limit != PAGE_SIZE:
            out["limit"] = self.limit
        return {k: str(v) for k, v in out.items() if v is not None}

    def link(self, cursor: Cursor | None) -> str:
        params = self.filter_params()
        if cursor is not None:
            params["cursor"] = cursor.encode()
        return urlencode(params)


def parse_query(*, status: str | None = None, prefix: str | None = None,
                round: str | None = None, tag: str | None = None,  # noqa: A002
                source: str | None = None, cursor: str | None = None,
                limit: str | None = None) -> ItemQuery:
    """The list's query parameters (all strings, empty meaning unset), or a 400 that says
    which one is wrong."""
    def choice(enum, value: str | None, name: str):  # noqa: ANN001, ANN202
        if not value:
            return None
        try:
            return enum(value)
        except ValueError:
            raise BadRequest(f"{name} must be one of: {', '.join(enum)}.") from None

    def number(value: str | None, name: str, low: int, high: int) -> int | None:
        if not value:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}.")
        return int(value)

    prefix, tag = (prefix or "").strip(), (tag or "").strip()
    if len(prefix) > 200 or len(tag) > MAX_TAG_CHARS:
        raise BadRequest("The id prefix or the tag is too long.")
    if "\x00" in prefix + tag:
        raise BadRequest("The id prefix or the tag holds a NUL character.")
    return ItemQuery(
        status=choice(ItemStatus, status, "status"), prefix=prefix or None,
        round=number(round, "round", 1, 1_000_000), tag=tag or None,
        source=choice(ConsensusSource, source, "source"),
        cursor=Cursor.decode(cursor) if cursor else None,
        limit=number(limit, "limit", 1, MAX_PAGE_SIZE) or PAGE_SIZE)
