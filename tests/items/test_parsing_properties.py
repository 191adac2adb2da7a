"""Import parsing under generated input (hypothesis): whatever arrives, the answer is a
per-line report, never an exception; nothing over the limits gets through; valid records
come back exactly; every error names the line it is on."""

from __future__ import annotations

import csv
import io
import json
import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.items.parsing import Limits, ParsedItem, ParseResult, parse_file, parse_records

LIMITS = Limits(max_line_bytes=400, max_responses=3, max_response_chars=40)
# Deterministic and bounded: the whole file runs in well under 30 s on a busy CI runner.
FAST = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# Text that exercises the awkward parts: quotes, commas, newlines, CR, BOM, non-ASCII.
ODD = st.sampled_from(['"', ",", "\n", "\r", "\ufeff", "[", "{", "é", "😀", "\\", " "])
TEXT = st.text(st.one_of(st.characters(codec="utf-8"), ODD), max_size=30)

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                        st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)

MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant",
                                                          "robot"]),
                                 "content": st.one_of(TEXT, JSON_SCALAR)})
RESPONSE_ISH = st.one_of(TEXT, JSON_VALUE, st.fixed_dictionaries(
    {"text": st.one_of(TEXT, JSON_SCALAR)},
    optional={"model": st.one_of(TEXT, JSON_SCALAR),
              "source": st.sampled_from(["imported", "generated", "human_edit", "x"]),
              "parent": st.one_of(st.integers(-2, 5), TEXT)}))
# Objects shaped like records, each field right, wrong or missing: reaches the deep checks
# that arbitrary JSON almost never does.
RECORD_ISH = st.fixed_dictionaries({}, optional={
    "prompt": st.one_of(TEXT, JSON_VALUE, st.lists(MESSAGE, max_size=3)),
    "responses": st.one_of(JSON_VALUE, st.lists(RESPONSE_ISH, max_size=6)),
    "external_id": st.one_of(TEXT, JSON_SCALAR, st.text(max_size=250)),
    "id": JSON_SCALAR,
    "metadata": JSON_VALUE,
    "gold": st.one_of(st.integers(-1, 6), st.lists(st.integers(-1, 6), max_size=6), JSON_VALUE),
    "tandem": st.one_of(st.just(1), JSON_SCALAR),
    "labels": st.one_of(JSON_VALUE, st.lists(st.fixed_dictionaries(
        {"labeler": TEXT}, optional={"choice": TEXT, "ranking": JSON_VALUE,
                                     "a": st.integers(-1, 6)}), max_size=3)),
    "ai_labels": JSON_VALUE,
    "round": JSON_SCALAR,
})
ANY_RECORD = st.one_of(JSON_VALUE, RECORD_ISH)


def _originals(item: ParsedItem) -> int:
    return sum(1 for r in item.responses if r.source != "human_edit")


def assert_within_limits(result: ParseResult) -> None:
    """What the parser accepted is an item the rest of Tandem can rely on."""
    for item in result.items:
        assert 2 <= _originals(item) <= LIMITS.max_responses, item
        for r in item.responses:
            assert isinstance(r.text, str) and r.text.strip()
            assert len(r.text) <= LIMITS.max_response_chars
            assert r.model is None or isinstance(r.model, str)
        if isinstance(item.prompt, str):
            assert item.prompt.strip()
        else:
            assert item.prompt and all(m["role"] in {"system", "user", "assistant"}
                                       and isinstance(m["content"], str) for m in item.prompt)
        assert item.external_id and len(item.external_id) <= 200
        assert isinstance(item.metadata, dict)
        if item.gold is not None:
            assert sorted(item.gold) == list(range(_originals(item)))
    ids = [item.external_id for item in result.items]
    assert len(ids) == len(set(ids)), "an accepted file holds each external id once"


def assert_one_outcome_per_line(result: ParseResult, lines: int) -> None:
    """Each record line gives one item or one error; an empty input is one error."""
    assert result.lines == lines
    if lines == 0:
        assert [(e.line, e.message) for e in result.errors] == [(1, "the file has no items")]
    else:
        assert len(result.items) + result.error_count == lines
    assert result.errors == sorted(result.errors, key=lambda e: e.line)
    assert all(e.message for e in result.errors)


@FAST
@given(data=st.binary(max_size=600), fmt=st.sampled_from(["jsonl", "csv"]))
def test_arbitrary_bytes_give_a_report_never_an_exception(data: bytes, fmt: str) -> None:
    result = parse_file(data, file_format=fmt, limits=LIMITS)
    physical = data.count(b"\n") + 1
    assert all(1 <= e.line <= physical for e in result.errors), result.errors
    assert all(1 <= i.line <= physical for i in result.items)
    if fmt == "jsonl":
        assert_one_outcome_per_line(result, sum(1 for ln in data.split(b"\n") if ln.strip()))
    assert result.ok == (result.error_count == 0)
    assert_within_limits(result)


@FAST
@given(records=st.lists(ANY_RECORD, max_size=6))
def test_arbitrary_json_lines_are_each_an_item_or_an_error(records: list) -> None:
    data = "\n".join(json.dumps(r) for r in records).encode()
    result = parse_file(data, file_format="jsonl", limits=LIMITS)
    assert_one_outcome_per_line(result, len(records))
    assert_within_limits(result)
    for item in result.items:  # an item is what its own line said, not a neighbour's
        source = records[item.line - 1]
        assert isinstance(source, dict) and item.prompt == source["prompt"]
        assert [r.text for r in item.responses] == [
            r if isinstance(r, str) else r["text"] for r in source["responses"]]
        assert len(json.dumps(source).encode()) <= LIMITS.max_line_bytes


@FAST
@given(records=st.lists(ANY_RECORD, max_size=6))
def test_arbitrary_json_records_report_their_index_as_the_line(records: list) -> None:
    result = parse_records(records, limits=LIMITS)
    assert_one_outcome_per_line(result, len(records))
    assert all(1 <= e.line <= max(len(records), 1) for e in result.errors)
    assert_within_limits(result)
    for item in result.items:
        assert item.prompt == records[item.line - 1]["prompt"]


@FAST
@given(lines=st.lists(st.one_of(TEXT, st.binary(max_size=40).map(
    lambda b: b.decode("latin-1"))), max_size=8))
def test_arbitrary_text_lines_in_either_format_never_raise(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    for fmt in ("jsonl", "csv"):
        result = parse_file(data, file_format=fmt, limits=LIMITS)
        assert all(1 <= e.line <= data.count(b"\n") + 1 for e in result.errors)
        assert_within_limits(result)


# Valid records: what a user would import, built field by field.
# No NUL: the parser refuses it (PostgreSQL cannot store it); other control characters pass.
SAFE_CHARS = st.characters(codec="utf-8", exclude_characters="\x00") | ODD
SAFE_TEXT = st.text(SAFE_CHARS, min_size=1, max_size=LIMITS.max_response_chars).filter(str.strip)
SAFE_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.text(SAFE_CHARS, max_size=10))
CHAT = st.lists(st.builds(dict, role=st.sampled_from(["system", "user", "assistant"]),
                          content=st.text(SAFE_CHARS, max_size=20)), min_size=1, max_size=3)
EXTERNAL_ID = st.text(string.ascii_letters + string.digits + "-_:.é ", min_size=1,
                      max_size=30).map(str.strip).filter(bool)


@st.composite
def valid_records(draw: st.DrawFn, *, chat: bool = True) -> dict:
    n = draw(st.integers(2, LIMITS.max_responses))
    responses = []
    for _ in range(n):
        text, model = draw(SAFE_TEXT), draw(st.none() | st.text(string.ascii_letters, min_size=1,
                                                                max_size=8))
        responses.append({"text": text, "model": model} if model else text)
    prompt = draw(st.one_of(SAFE_TEXT, CHAT) if chat else SAFE_TEXT)
    record = {"prompt": prompt, "responses": responses,
              "metadata": draw(st.dictionaries(st.text(string.ascii_lowercase, min_size=1,
                                                       max_size=5), SAFE_SCALAR, max_size=2))}
    if draw(st.booleans()):
        record["external_id"] = draw(EXTERNAL_ID)
    if draw(st.booleans()):
        record["gold"] = draw(st.permutations(range(n)))
    return record


def _unique_ids(records: list[dict]) -> bool:
    ids = [r.get("external_id") for r in records if r.get("external_id")]
    return len(ids) == len(set(ids))


def assert_round_trip(item: ParsedItem, record: dict) -> None:
    assert item.prompt == record["prompt"]
    assert [(r.text, r.model) for r in item.responses] == [
        (r, None) if isinstance(r, str) else (r["text"], r["model"]) for r in record["responses"]]
    if record.get("external_id"):
        assert item.external_id == record["external_id"]
    assert item.gold == record.get("gold")


SMALL_LINES = Limits(max_line_bytes=10**6, max_responses=LIMITS.max_responses,
                     max_response_chars=LIMITS.max_response_chars)


@FAST
@given(records=st.lists(valid_records(), min_size=1, max_size=5).filter(_unique_ids))
def test_valid_jsonl_records_round_trip(records: list[dict]) -> None:
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    result = parse_file(data, file_format="jsonl", limits=SMALL_LINES)
    # two records with the same content and no ids are one item: the second is flagged
    assert result.ok or all("duplicate external_id" in e.message for e in result.errors)
    for item in result.items:
        record = records[item.line - 1]
        assert_round_trip(item, record)
        assert item.metadata == record["metadata"]


def _csv_row(record: dict) -> dict[str, str]:
    row = {"prompt": record["prompt"] if isinstance(record["prompt"], str)
           else json.dumps(record["prompt"]),
           "external_id": record.get("external_id", ""),
           "metadata": json.dumps(record["metadata"]) if record["metadata"] else ""}
    for i, r in enumerate(record["responses"], start=1):
        row[f"response_{i}"] = r if isinstance(r, str) else r["text"]
        row[f"model_{i}"] = "" if isinstance(r, str) else r["model"]
    return row


LINE_BREAK = re.compile(r"\r\n|\r|\n")
CSV_COLUMNS = ["prompt", "external_id", "metadata"] + [
    f"{kind}_{i}" for i in range(1, LIMITS.max_responses + 1) for kind in ("response", "model")]


def _csv_file(rows: list[dict[str, str]]) -> tuple[bytes, list[int]]:
    """The file, and the physical line each row starts on (cells may hold newlines; CR,
    LF and CRLF each end a line, as in the editors users open the file with)."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)  # CRLF: quotes cells with CR or LF
    writer.writeheader()
    starts = []
    for row in rows:
        starts.append(len(LINE_BREAK.findall(out.getvalue())) + 1)
        writer.writerow(row)
    return out.getvalue().encode(), starts


def _csv_safe(record: dict) -> bool:
    # a text prompt that starts with "[" may be read as a chat: CSV cannot tell them apart
    prompt = record["prompt"]
    return not (isinstance(prompt, str) and prompt.lstrip().startswith("["))


@FAST
@given(records=st.lists(valid_records().filter(_csv_safe), min_size=1, max_size=5)
       .filter(_unique_ids))
def test_valid_csv_records_round_trip_on_the_lines_they_start(records: list[dict]) -> None:
    records = [{k: v for k, v in r.items() if k != "gold"} for r in records]  # no CSV column
    data, starts = _csv_file([_csv_row(r) for r in records])
    result = parse_file(data, file_format="csv", limits=SMALL_LINES)
    assert result.ok or all("duplicate external_id" in e.message for e in result.errors)
    by_line = dict(zip(starts, records, strict=True))
    for item in result.items:
        assert item.line in by_line, (item.line, starts)
        assert_round_trip(item, by_line[item.line])


BAD_LINES = st.sampled_from([
    '{"prompt": "x", "responses": ["a", "b"]',  # cut short
    '{"prompt": "x", "responses": ["only one"]}',
    '{"prompt": "", "responses": ["a", "b"]}',
    '["not", "an", "object"]',
    '{"prompt": "x", "responses": ["a", "' + "b" * 50 + '"]}',  # over max_response_chars
    '{"prompt": "x", "responses": ["a", "b", "c", "d"]}',  # over max_responses
    '{"prompt": "x", "responses": ["a", "b"], "gold": 5}',
    "\x00\x01 not json",
])


@FAST
@given(lines=st.lists(st.one_of(valid_records(chat=False).map(lambda r: ("ok", r)),
                                BAD_LINES.map(lambda s: ("bad", s)),
                                st.sampled_from(["", "  ", "\r"]).map(lambda s: ("blank", s))),
                      max_size=10))
def test_the_report_names_exactly_the_bad_lines(lines: list[tuple[str, object]]) -> None:
    text_lines, good, bad = [], {}, []
    for n, (kind, value) in enumerate(lines, start=1):
        if kind == "ok":
            value = {**value, "external_id": f"line-{n}"}  # unique: no duplicate flags
            good[n] = value
            text_lines.append(json.dumps(value))
        else:
            text_lines.append(value)
            if kind == "bad":
                bad.append(n)
    result = parse_file("\n".join(text_lines).encode(), file_format="jsonl",
                        limits=SMALL_LINES)
    if not good and not bad:
        assert [e.line for e in result.errors] == [1]
        return
    assert [e.line for e in result.errors] == bad
    assert {item.line for item in result.items} == set(good)
    for item in result.items:
        assert_round_trip(item, good[item.line])


def test_numbers_too_long_to_convert_are_a_line_error_not_a_crash() -> None:
    # Python refuses int("1" * 5000) (CVE-2020-10735): a ValueError, not a JSONDecodeError
    data = b'{"prompt": "x", "responses": ["a", "b"]}\n{"prompt": ' + b"1" * 5000 + b"}"
    for fmt, blob in (("jsonl", data), ("csv", b"prompt,response_1,response_2,metadata\n"
                                         b'x,a,b,"{""n"": ' + b"9" * 5000 + b'}"\n')):
        result = parse_file(blob, file_format=fmt, limits=Limits())
        assert [e.line for e in result.errors] == [2], result.errors
        assert "invalid JSON" in result.errors[0].message


def test_deeply_nested_json_is_a_line_error_not_a_crash() -> None:
    data = b'{"prompt": "x", "responses": ["a", "b"]}\n' + b"[" * 100_000
    result = parse_file(data, file_format="jsonl", limits=Limits())
    assert [e.line for e in result.errors] == [2], result.errors
    assert "invalid JSON" in result.errors[0].message


def test_nan_and_infinity_are_not_json() -> None:
    # json.loads accepts them, but PostgreSQL's JSON types (and most clients) do not
    data = b'{"prompt": "x", "responses": ["a", "b"], "metadata": {"score": NaN}}\n' \
           b'{"prompt": "y", "responses": ["a", "b"], "weight": -Infinity}'
    result = parse_file(data, file_format="jsonl", limits=Limits())
    assert [e.line for e in result.errors] == [1, 2], result.errors
    # the message says why (not "too many digits", which Python's guard against long
    # integers would say)
    assert [e.message for e in result.errors] == [
        "invalid JSON: NaN is not a JSON number", "invalid JSON: -Infinity is not a JSON number"]


def test_a_csv_row_without_its_prompt_cell_is_a_line_error() -> None:
    data = b"response_1,response_2,prompt\na,b,What?\nc,d\n"
    result = parse_file(data, file_format="csv", limits=Limits())
    assert [(e.line, "prompt" in e.message) for e in result.errors] == [(3, True)]
    assert [i.prompt for i in result.items] == ["What?"]


def test_a_full_fidelity_record_cannot_carry_more_originals_than_the_limit() -> None:
    record = {"tandem": 1, "prompt": "x", "responses": [f"r{i}" for i in range(6)]}
    result = parse_records([record], limits=LIMITS)
    assert [e.line for e in result.errors] == [1]
    assert "too many responses" in result.errors[0].message
