"""Parse and validate import files (JSONL or CSV), reporting every bad line and why.

Nothing here touches the database: the caller imports the items only when there are no
errors, so a file is imported whole or not at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.items.history_schema import check_history

ROLES = {"system", "user", "assistant"}
MAX_ERRORS_REPORTED = 200
RESERVED = {"external_id", "id", "prompt", "responses", "metadata", "gold"}
# Tandem's full-fidelity export (app.exports.tandem): kept as the item's history to restore.
HISTORY_KEYS = ("labels", "ai_labels", "adjudications")
RESERVED_FULL = frozenset(RESERVED | {"tandem", "consensus", "round", *HISTORY_KEYS})
MAX_MODEL_CHARS = 200  # the column's size
RESPONSE_SOURCES = {"imported", "generated", "human_edit"}


# Parsed items are NamedTuples, not frozen dataclasses: as immutable, and an import makes
# three of them an item, where a frozen dataclass's __init__ took 5% of the web process.
class ParsedResponse(NamedTuple):
    text: str
    model: str | None = None
    # a full-fidelity record's responses also say where they came from
    source: str = "imported"
    parent: int | None = None  # index of the response an edit came from
    created_by: str | None = None  # email


class ParsedItem(NamedTuple):
    line: int
    external_id: str
    prompt: str | list[dict[str, str]]
    responses: list[ParsedResponse]
    metadata: dict[str, Any]
    gold: list[int] | None = None  # response indexes, best first
    history: dict[str, Any] | None = None  # labels etc. of a full-fidelity record


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


@dataclass
class ParseResult:
    items: list[ParsedItem] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0
    lines: int = 0

    def add_error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append(LineError(line, message))

    @property
    def ok(self) -> bool:
        return self.error_count == 0


@dataclass(frozen=True)
class Limits:
    max_line_bytes: int = 1024 * 1024
    max_responses: int = 8
    max_response_chars: int = 100_000


class RecordError(ValueError):
    """One record is unusable; the message says why, in the user's words."""


def detect_format(filename: str, declared: str | None = None) -> str:
    if declared in {"jsonl", "csv"}:
        return declared
    lower = filename.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise RecordError("Unknown file type: name it .jsonl or .csv (or choose the format).")


def content_id(prompt: Any, responses: list[ParsedResponse]) -> str:
    """A stable id for a record without one, so re-importing it is recognised."""
    blob = json.dumps([prompt, [r.text for r in responses]], sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def _not_json(name: str) -> Any:
    raise RecordError(f"invalid JSON: {name} is not a JSON number")


def load_json(text: str) -> Any:
    """``json.loads`` whose every failure is a RecordError: besides syntax errors, Python
    refuses integers over 4300 digits (ValueError) and very deep nesting (RecursionError),
    and NaN/Infinity are refused because PostgreSQL's JSON types cannot hold them."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise RecordError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise RecordError("invalid JSON: nested too deeply") from None
    except RecordError:  # NaN or Infinity, refused by _not_json
        raise
    except ValueError:  # int("1" * 5000): Python's guard against slow conversions
        raise RecordError("invalid JSON: a number has too many digits") from None


_CONTAINERS = (dict, list)  # a tuple: isinstance takes it faster than ``dict | list``


# A lone UTF-16 surrogate (JSON's "\ud800" without its pair) is no character: it has no
# UTF-8 form, so neither database can store it.
_SURROGATE = re.compile("[\ud800-\udfff]")
NUL_TEXT = "a text holds a NUL character (\\u0000), which cannot be stored"
SURROGATE_TEXT = ("a text holds a lone surrogate (a \\ud800-\\udfff escape without its "
                  "pair), which is no character and cannot be stored")


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return NUL_TEXT
    if not text.isascii() and _SURROGATE.search(text):  # isascii: a flag, no scan
        return SURROGATE_TEXT
    return None


def _unstorable(obj: Any) -> str | None:
    """Why a text anywhere in the record (a key or a value) cannot be stored: a NUL
    character (PostgreSQL cannot hold it in text or JSON) or a lone surrogate; None if none.

    A loop over a stack of containers (no recursion, however deep the JSON) that looks into
    strings where it meets them: it walks every value of every record of an import."""
    if isinstance(obj, str):
        return _bad_text(obj)
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and (why := _bad_text(key)):
                    return why
            value = value.values()
        elif not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, str):
                if why := _bad_text(item):
                    return why
            elif isinstance(item, _CONTAINERS):
                stack.append(item)
    return None


def _blank(text: str) -> bool:
    """Empty or only whitespace (as ``not text.strip()``, without copying a long text)."""
    return not text or text.isspace()


def _prompt(value: Any) -> str | list[dict[str, str]]:
    if value is None:
        raise RecordError("missing field 'prompt'")
    if isinstance(value, str):
        if _blank(value):
            raise RecordError("'prompt' is empty")
        return value
    if isinstance(value, list):
        if not value:
            raise RecordError("'prompt' is an empty list of messages")
        messages = []
        for i, m in enumerate(value, start=1):
            if not isinstance(m, dict):
                raise RecordError(f"wrong type: prompt message {i} must be an object "
                                  "with 'role' and 'content'")
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                raise RecordError(f"prompt message {i} has role {role!r}; "
                                  "use system, user or assistant")
            if not isinstance(content, str):
                raise RecordError(f"wrong type: prompt message {i} 'content' must be a string")
            messages.append({"role": role, "content": content})
        return messages
    raise RecordError(f"wrong type: 'prompt' must be a string or a list of chat messages, "
                      f"not {type(value).__name__}")


def _responses(value: Any, limits: Limits) -> list[ParsedResponse]:
    if value is None:
        raise RecordError("missing field 'responses'")
    if not isinstance(value, list):
        raise RecordError(f"wrong type: 'responses' must be a list, not {type(value).__name__}")
    out = []
    for i, r in enumerate(value, start=1):
        if isinstance(r, str):
            text, model = r, None
        elif isinstance(r, dict):
            text, model = r.get("text"), r.get("model")
            if text is None:
                raise RecordError(f"missing field 'text' in response {i}")
            if model is not None and not isinstance(model, str):
                raise RecordError(f"wrong type: response {i} 'model' must be a string")
            if model is not None and len(model) > MAX_MODEL_CHARS:
                raise RecordError(f"too large: response {i} 'model' is over "
                                  f"{MAX_MODEL_CHARS} characters")
        else:
            raise RecordError(f"wrong type: response {i} must be a string or an object "
                              "with 'text'")
        if not isinstance(text, str):
            raise RecordError(f"wrong type: response {i} 'text' must be a string")
        if _blank(text):
            raise RecordError(f"response {i} is empty")
        if len(text) > limits.max_response_chars:
            raise RecordError(f"too large: response {i} has {len(text)} characters "
                              f"(limit {limits.max_response_chars})")
        out.append(ParsedResponse(text=text, model=model or None))
    if len(out) < 2:
        raise RecordError(f"too few responses: {len(out)} (an item needs at least 2)")
    if len(out) > limits.max_responses:
        raise RecordError(f"too many responses: {len(out)} (at most {limits.max_responses})")
    return out


def _gold(value: Any, n: int) -> list[int] | None:
    """``gold``: the index of the best response, or all indexes best first (0-based)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] + [i for i in range(n) if i != value]
    if (not isinstance(value, list) or any(not isinstance(i, int) or isinstance(i, bool)
                                           for i in value)
            or sorted(value) != list(range(n))):
        raise RecordError(f"wrong type: 'gold' must be the index of the best response (0 to "
                          f"{n - 1}) or a list of all {n} indexes, best first")
    return value


def _provenance(obj: dict, responses: list[ParsedResponse]) -> list[ParsedResponse]:
    """A full-fidelity record's responses keep their source, parent and author."""
    raw = obj["responses"]
    out = []
    for i, (parsed, r) in enumerate(zip(responses, raw, strict=True), start=1):
        if not isinstance(r, dict):
            out.append(parsed)
            continue
        source, parent, author = r.get("source") or "imported", r.get("parent"), r.get(
            "created_by")
        if source not in RESPONSE_SOURCES:
            raise RecordError(f"wrong type: response {i} 'source' must be one of "
                              f"{', '.join(sorted(RESPONSE_SOURCES))}")
        if parent is not None and (not isinstance(parent, int) or not 0 <= parent < len(raw)):
            raise RecordError(f"wrong type: response {i} 'parent' must be a response index")
        if author is not None and not isinstance(author, str):
            raise RecordError(f"wrong type: response {i} 'created_by' must be an email")
        out.append(ParsedResponse(text=parsed.text, model=parsed.model, source=source,
                                  parent=parent, created_by=author))
    return out


def validate_record(obj: Any, *, line: int, limits: Limits) -> ParsedItem:
    if not isinstance(obj, dict):
        raise RecordError(f"wrong type: expected a JSON object, not {type(obj).__name__}")
    if why := _unstorable(obj):
        raise RecordError(why)
    prompt = _prompt(obj.get("prompt"))
    full = obj.get("tandem") is not None
    max_originals = limits.max_responses
    if full and isinstance(obj.get("responses"), list):
        # human edits ride along in a full-fidelity record: allow them over the usual cap
        limits = Limits(max_line_bytes=limits.max_line_bytes,
                        max_responses=max(limits.max_responses, len(obj["responses"])),
                        max_response_chars=limits.max_response_chars)
    responses = _responses(obj.get("responses"), limits)
    history = None
    if full:
        if obj.get("tandem") != 1:
            raise RecordError("unknown full-fidelity format version: 'tandem' must be 1")
        responses = _provenance(obj, responses)
        originals = sum(1 for r in responses if r.source != "human_edit")
        if originals > max_originals:
            raise RecordError(f"too many responses: {originals} besides human edits "
                              f"(at most {max_originals})")
        history = {k: obj.get(k) or [] for k in HISTORY_KEYS}
        if any(not isinstance(v, list) for v in history.values()):
            raise RecordError("wrong type: 'labels', 'ai_labels' and 'adjudications' must "
                              "be lists")
        try:
            history = check_history(history, len(responses)).model_dump()
        except ValueError as exc:
            raise RecordError(str(exc)) from None
        labeling_round = obj.get("round", 1)
        if not isinstance(labeling_round, int) or isinstance(labeling_round, bool) \
                or labeling_round < 1:
            raise RecordError("wrong type: 'round' must be a whole number from 1")
        history["round"] = labeling_round
    gold = obj.get("gold")
    if gold is not None:
        gold = _gold(gold, sum(1 for r in responses if r.source != "human_edit"))
    ext = obj.get("external_id", obj.get("id"))
    if ext is not None and not isinstance(ext, str | int) or isinstance(ext, bool):
        raise RecordError("wrong type: 'external_id' must be a string or a number")
    ext_str = str(ext).strip() if ext is not None else ""
    if len(ext_str) > 200:
        raise RecordError("too large: 'external_id' is over 200 characters")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RecordError("wrong type: 'metadata' must be an object")
    skip = RESERVED_FULL if full else RESERVED
    extra = {k: v for k, v in obj.items() if k not in skip}
    return ParsedItem(
        line=line,
        external_id=ext_str or content_id(prompt, responses),
        prompt=prompt,
        responses=responses,
        metadata={**extra, **metadata} if extra else metadata,
        gold=gold,
        history=history,
    )


def _split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for n, raw in enumerate(data.split(b"\n"), start=1):
        yield n, raw.rstrip(b"\r")


def _decode(raw: bytes, n: int) -> str:
    if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}") \
            from None


def parse_jsonl(data: bytes, *, limits: Limits) -> ParseResult:
    result = ParseResult()
    for n, raw in _split_lines(data):
        if not raw.strip():
            continue
        result.lines += 1
        try:
            if len(raw) > limits.max_line_bytes:
                raise RecordError(f"too large: {len(raw)} bytes (limit {limits.max_line_bytes})")
            obj = load_json(_decode(raw, n))
            result.items.append(validate_record(obj, line=n, limits=limits))
        except RecordError as exc:
            result.add_error(n, str(exc))
    return result


def parse_csv(data: bytes, *, limits: Limits) -> ParseResult:
    """CSV with a header: prompt, response_1..response_8 (or response_a, response_b, ...),
    optional model_1.. / model_a.., external_id, metadata (a JSON object); any other column
    goes into the item's metadata. A prompt cell holding a JSON list of messages is a chat."""
    result = ParseResult()
    bad_lines = set()
    for n, raw in _split_lines(data):
        try:
            _decode(raw, n)
        except RecordError as exc:
            result.add_error(n, str(exc))
            bad_lines.add(n)
    if bad_lines:
        return result
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if "prompt" not in header:
        result.add_error(1, "missing column 'prompt' in the header line")
        return result
    response_cols = [h for h in header if h.startswith("response_")]
    if len(response_cols) < 2:
        result.add_error(1, "the header needs at least two response columns "
                            "(response_1, response_2, ...)")
        return result
    while True:
        n = reader.line_num + 1  # the physical line the next row starts on
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.add_error(n, f"invalid CSV: {exc}")
            break
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        result.lines += 1
        try:
            if None in row:
                raise RecordError("more cells than header columns")
            if sum(len(v or "") for v in row.values()) > limits.max_line_bytes:
                raise RecordError(f"too large: over {limits.max_line_bytes} bytes")
            result.items.append(_csv_record(row, response_cols, line=n, limits=limits))
        except RecordError as exc:
            result.add_error(n, str(exc))
    return result


def _csv_record(row: dict[str, str], response_cols: list[str], *, line: int,
                limits: Limits) -> ParsedItem:
    prompt: Any = row.get("prompt") or ""  # None: the row ends before the prompt column
    if prompt.lstrip().startswith("["):
        try:
            prompt = load_json(prompt)
        except RecordError:
            pass  # a prompt that merely starts with "[" is text
    responses = []
    for col in response_cols:
        text = row.get(col) or ""
        if text.strip():
            model = row.get("model_" + col.removeprefix("response_")) or None
            responses.append({"text": text, "model": model})
    metadata: Any = {}
    if (row.get("metadata") or "").strip():
        try:
            metadata = load_json(row["metadata"])
        except RecordError as exc:
            raise RecordError(f"{exc} (in the metadata cell)") from None
    used = {"prompt", "external_id", "id", "metadata", *response_cols}
    used |= {"model_" + c.removeprefix("response_") for c in response_cols}
    extra = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
    obj = {"prompt": prompt, "responses": responses, "external_id": row.get("external_id") or None,
           "metadata": {**extra, **metadata} if isinstance(metadata, dict) else metadata}
    return validate_record(obj, line=line, limits=limits)


def records_of_body(body: bytes) -> list[Any]:
    """The records of an API request body ``{"items": [...]}``; RecordError says what is
    wrong with a body that is not one (not UTF-8, not JSON, NaN, no list of items)."""
    obj = load_json(_decode(body, 1))
    records = obj.get("items") if isinstance(obj, dict) else None
    if not isinstance(records, list):
        raise RecordError('the body must be a JSON object with a list of items: '
                          '{"items": [...]}')
    return records


def parse_records(records: list[Any], *, limits: Limits) -> ParseResult:
    """Validate records that arrived as JSON already; record N is reported as line N."""
    result = ParseResult(lines=len(records))
    for n, obj in enumerate(records, start=1):
        try:
            result.items.append(validate_record(obj, line=n, limits=limits))
        except RecordError as exc:
            result.add_error(n, str(exc))
    return _finish(result)


def parse_file(data: bytes, *, file_format: str, limits: Limits) -> ParseResult:
    """Parse a whole file and flag duplicate external ids inside it."""
    parser = parse_csv if file_format == "csv" else parse_jsonl
    return _finish(parser(data, limits=limits))


def _finish(result: ParseResult) -> ParseResult:
    """Flag duplicate external ids, order the errors, refuse an empty import."""
    seen: dict[str, int] = {}
    unique = []
    for item in result.items:
        first = seen.get(item.external_id)
        if first is not None:
            result.add_error(item.line, f"duplicate external_id {item.external_id!r} "
                                        f"(first on line {first})")
            continue
        seen[item.external_id] = item.line
        unique.append(item)
    result.items = unique
    result.errors.sort(key=lambda e: e.line)
    if result.lines == 0 and result.ok:
        result.add_error(1, "the file has no items")
    return result
