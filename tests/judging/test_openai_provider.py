"""The OpenAI-compatible provider against a stand-in endpoint that answers in the real
wire format: logprobs, the JSON and text fallbacks, and the errors endpoints give."""

from __future__ import annotations

import re

import pytest

from app.judging.prompts import Question
from app.judging.providers.base import TransientError
from app.judging.providers.openai_compat import OpenAICompatProvider
from tests.judging.fake_openai import FakeOpenAI, completion

Q = Question(messages=[{"role": "user", "content": "A or B?"}], choices=("A", "B"))


@pytest.fixture
def fake(app_env, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-test-secret-123")
    with FakeOpenAI() as server:
        yield server


def provider(fake: FakeOpenAI, **kwargs) -> OpenAICompatProvider:  # noqa: ANN003
    return OpenAICompatProvider(base_url=fake.base_url, model="judge-1",
                                api_key_env="JUDGE_TEST_KEY", per_minute=100_000,
                                timeout_s=kwargs.pop("timeout_s", 5), **kwargs)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_odds_come_from_top_logprobs_and_the_key_is_sent(fake) -> None:  # noqa: ANN001
    fake.script.append(("json", completion("B", logprobs={"B": 0.6, "A": 0.2, "C": 0.2})))
    [answer] = provider(fake).answer([Q])
    assert answer.p_first == pytest.approx(0.25)
    assert answer.prompt_tokens == 11
    assert fake.requests[0]["logprobs"] is True and fake.requests[0]["max_tokens"] == 1
    assert fake.headers[0]["authorization"] == "Bearer sk-test-secret-123"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_choice_missing_from_the_top_logprobs_is_not_taken_as_impossible(fake) -> None:  # noqa: ANN001
    # Only B is listed: A has at most the smallest listed probability (0.01) and at most what
    # the list leaves over (0.02), so the judge is very sure, but never certain.
    fake.script.append(("json", completion("B", logprobs={"B": 0.95, " the": 0.02,
                                                          "C": 0.01})))
    [answer] = provider(fake).answer([Q])
    assert answer.p_first == pytest.approx(0.01 / 0.96)
    # What the list leaves over bounds it when that is smaller than the last listed one.
    fake.script.append(("json", completion("A", logprobs={"A": 0.995, "C": 0.004})))
    [answer] = provider(fake).answer([Q])
    assert answer.p_first == pytest.approx(0.995 / (0.995 + 0.001))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_without_logprobs_it_asks_for_json_with_a_rationale(fake) -> None:  # noqa: ANN001
    fake.script.append(("json", completion("A")))  # no logprobs in the answer
    fake.script.append(("json", completion('{"answer": "B", "rationale": "B is kinder."}')))
    p = provider(fake)
    [answer] = p.answer([Q])
    assert (answer.p_first, answer.rationale) == (0.0, "B is kinder.")
    assert fake.requests[1]["response_format"]["type"] == "json_schema"
    assert p.mode == "json"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_without_json_schema_support_it_parses_text(fake) -> None:  # noqa: ANN001
    fake.script.append(("json", completion("A")))  # no logprobs
    fake.script.append(("status", 400, {"message": "response_format is not supported"}))
    fake.script.append(("json", completion("The answer is B, because it is polite.")))
    p = provider(fake)
    [answer] = p.answer([Q])
    assert answer.p_first == 0.0 and "polite" in answer.rationale
    assert p.mode == "text" and "response_format" not in fake.requests[2]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_unreadable_answer_is_a_failure_with_its_reason(fake) -> None:  # noqa: ANN001
    p = provider(fake)
    p.mode = "text"
    fake.script.append(("json", completion("Both have merits.")))
    [answer] = p.answer([Q])
    assert answer.p_first is None and "cannot read A or B" in answer.error


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("script", "expected"), [
    (("status", 429, {"Retry-After": "7"}), "rate limited (429)"),
    (("status", 500, {}), "server error (500)"),
    (("status", 503, {}), "server error (503)"),
    (("raw", b"{not json", {}), "malformed"),
    (("json", {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
               "choices": []}), "empty answer"),
])
def test_endpoint_errors_are_transient_with_their_reason(fake, script, expected) -> None:  # noqa: ANN001
    fake.script.append(script)
    with pytest.raises(TransientError, match=re.escape(expected)) as info:
        provider(fake).answer([Q])
    if script[1] == 429:
        assert info.value.retry_after == 7.0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_slow_endpoint_times_out_as_transient(fake) -> None:  # noqa: ANN001
    fake.script.append(("sleep", 3))
    with pytest.raises(TransientError, match="timed out"):
        provider(fake, timeout_s=0.5).answer([Q])
