"""Import files: every bad line is named with its reason; good files parse exactly."""

from __future__ import annotations

import json

import pytest

from app.items.parsing import Limits, parse_file

LIMITS = Limits(max_line_bytes=2000, max_responses=8, max_response_chars=500)


def jsonl(*records) -> bytes:  # noqa: ANN002
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


GOOD = {"external_id": "a", "prompt": "Hi?", "responses": ["Hello.", "Go away."]}


def errors(data: bytes, fmt: str = "jsonl") -> dict[int, str]:
    result = parse_file(data, file_format=fmt, limits=LIMITS)
    return {e.line: e.message for e in result.errors}


def test_good_jsonl_with_chat_prompt_and_models_parses() -> None:
    data = jsonl(GOOD, {"prompt": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "2+2?"}],
                        "responses": [{"text": "4", "model": "m1"}, {"text": "5"}],
                        "metadata": {"topic": "math"}, "source": "forum"})
    result = parse_file(data, file_format="jsonl", limits=LIMITS)
    assert result.ok and len(result.items) == 2
    chat = result.items[1]
    assert chat.prompt[1] == {"role": "user", "content": "2+2?"}
    assert [r.model for r in chat.responses] == ["m1", None]
    assert chat.metadata == {"topic": "math", "source": "forum"}
    assert chat.external_id.startswith("sha256:")


@pytest.mark.parametrize(("line", "expected"), [
    ('{"prompt": "x", "responses": ["a", "b"]', "invalid JSON"),
    (json.dumps({"responses": ["a", "b"]}), "missing field 'prompt'"),
    (json.dumps({"prompt": "x"}), "missing field 'responses'"),
    (json.dumps({"prompt": 42, "responses": ["a", "b"]}), "wrong type: 'prompt'"),
    (json.dumps({"prompt": "x", "responses": "a"}), "wrong type: 'responses'"),
    (json.dumps({"prompt": "x", "responses": ["a", 7]}), "wrong type: response 2"),
    (json.dumps(["x"]), "wrong type: expected a JSON object"),
    (json.dumps({"prompt": "x", "responses": ["only one"]}), "too few responses: 1"),
    (json.dumps({"prompt": "x", "responses": ["r"] * 9}), "too many responses: 9"),
    (json.dumps({"prompt": "x", "responses": ["a", "b" * 600]}), "too large: response 2"),
    (json.dumps({"prompt": "x" * 3000, "responses": ["a", "b"]}), "too large: 3"),
    (json.dumps({"prompt": [{"role": "robot", "content": "x"}], "responses": ["a", "b"]}),
     "role 'robot'"),
])
def test_each_kind_of_bad_line_is_reported_with_its_reason(line: str, expected: str) -> None:
    found = errors(jsonl(GOOD, line, {**GOOD, "external_id": "c"}))
    assert list(found) == [2]
    assert expected in found[2]


def test_invalid_utf8_is_reported_on_its_line() -> None:
    data = jsonl(GOOD) + b"\n" + b'{"prompt": "caf\xe9", "responses": ["a", "b"]}'
    found = errors(data)
    assert list(found) == [2] and "not UTF-8" in found[2]


def test_all_bad_lines_are_reported_and_no_items_kept_apart_from_them() -> None:
    data = jsonl(GOOD, "nope", {**GOOD, "external_id": "b"}, "{}", "")
    result = parse_file(data, file_format="jsonl", limits=LIMITS)
    assert [e.line for e in result.errors] == [2, 4]
    assert not result.ok


def test_duplicate_external_id_inside_a_file_is_an_error() -> None:
    found = errors(jsonl(GOOD, GOOD))
    assert "duplicate external_id 'a' (first on line 1)" in found[2]


def test_empty_file_is_an_error() -> None:
    assert "no items" in errors(b"\n\n")[1]


def test_csv_with_models_chat_prompt_and_extra_columns() -> None:
    data = (
        b"external_id,prompt,response_1,response_2,response_3,model_1,lang\n"
        b'x1,"Say ""hi""",Hi!,"Hello,\nthere",,m-a,en\n'
        b'x2,"[{""role"": ""user"", ""content"": ""Q""}]",A1,A2,A3,,de\n'
    )
    result = parse_file(data, file_format="csv", limits=LIMITS)
    assert result.ok, result.errors
    first, second = result.items
    assert first.prompt == 'Say "hi"'
    assert [r.text for r in first.responses] == ["Hi!", "Hello,\nthere"]
    assert first.responses[0].model == "m-a" and first.metadata == {"lang": "en"}
    assert second.prompt == [{"role": "user", "content": "Q"}] and len(second.responses) == 3
    assert second.line == 4  # the first row spans lines 2 and 3


def test_csv_errors_name_the_line() -> None:
    data = b"prompt,response_1,response_2\nok,a,b\nbad,only-one,\n"
    assert "too few responses" in errors(data, "csv")[3]
    assert "missing column 'prompt'" in errors(b"question,response_1,response_2\nq,a,b\n", "csv")[1]
    assert "not UTF-8" in errors(b"prompt,response_1,response_2\n\xff,a,b\n", "csv")[2]
