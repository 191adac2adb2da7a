"""Any OpenAI-compatible chat-completions endpoint as judge (OpenAI, vLLM, Ollama,
llama.cpp's server, TGI), through the ``openai`` SDK.

The odds come from ``logprobs``/``top_logprobs`` when the server returns them; otherwise
from a JSON answer constrained by a schema; otherwise from the plain text. An answer that
cannot be read is a failure with its reason, never a guess. 429 (with Retry-After), 5xx,
timeouts, malformed bodies and empty answers raise TransientError so the task can retry.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.judging.limits import Limiter
from app.judging.prompts import Question
from app.judging.providers.base import Answer, TransientError

JSON_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "rationale": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


class OpenAICompatProvider:
    name = "openai"

    def __init__(self, *, base_url: str | None, model: str, api_key_env: str | None,
                 sampling: dict[str, Any] | None = None, concurrency: int = 4,
                 per_minute: int = 600, timeout_s: float = 60.0) -> None:
        from openai import OpenAI

        if not model:
            raise ValueError("an OpenAI-compatible judge needs a model name")
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        # The key is read from the environment here and kept only inside the client.
        self._client = OpenAI(base_url=base_url or None, api_key=key or "not-needed",
                              max_retries=0, timeout=timeout_s)
        self.base_url, self.model = base_url or "", model
        self.sampling = dict(sampling or {})
        self.mode = "logprobs"  # falls back to "json", then "text", as the server allows
        # A slot held by a worker that died frees itself once no call could still be running.
        self.limiter = Limiter(f"{self.base_url}|{model}", concurrency=concurrency,
                               per_minute=per_minute, lease_s=timeout_s + 5)
        self.concurrency = max(1, concurrency)

    def identity(self) -> str:
        return json.dumps(["openai", self.base_url, self.model, self.sampling], sort_keys=True)

    def answer(self, questions: list[Question]) -> list[Answer]:
        stop = threading.Event()  # after a 429 or 5xx, send nothing more from this batch

        def one(question: Question) -> Answer:
            if stop.is_set():
                raise TransientError("skipped after an earlier transient error")
            try:
                return self._one(question)
            except TransientError:
                stop.set()
                raise

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(questions) or 1)) as pool:
            futures = [pool.submit(one, q) for q in questions]
            results: list[Answer] = []
            first_error: TransientError | None = None
            for future in futures:
                try:
                    results.append(future.result())
                except TransientError as exc:
                    if first_error is None or "skipped after" in str(first_error):
                        first_error = exc
            if first_error is not None:
                raise first_error
            return results

    def _one(self, question: Question) -> Answer:
        while True:
            mode = self.mode
            try:
                return getattr(self, f"_ask_{mode}")(question)
            except _Unsupported:
                self.mode = {"logprobs": "json", "json": "text"}[mode]

    # -- the three ways of asking -------------------------------------------------------

    def _ask_logprobs(self, q: Question) -> Answer:
        started = time.perf_counter()
        response = self._call(messages=q.messages, max_tokens=1, logprobs=True,
                              top_logprobs=int(self.sampling.get("top_logprobs", 20)),
                              temperature=0.0)
        choice = _first_choice(response)
        content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
        if not content:
            raise _Unsupported  # this server gives no log-probabilities
        listed = content[0].top_logprobs or []
        odds = {c: 0.0 for c in q.choices}
        for alt in listed:
            token = alt.token.strip()
            for c in q.choices:
                if token.lower() == c.lower():
                    odds[c] += math.exp(alt.logprob)
        if any(odds.values()):
            # A choice the server did not list has at most the smallest listed probability
            # (and at most what the list leaves over): counting it as 0 would claim a
            # certainty that a truncated list cannot show. A server whose kernels differ
            # slightly drops the weaker choice just past the top k.
            shown = [math.exp(alt.logprob) for alt in listed]
            unlisted = min(min(shown), max(0.0, 1.0 - sum(shown)))
            odds = {c: p or unlisted for c, p in odds.items()}
        total = sum(odds.values())
        first, _ = q.choices
        if total <= 0:
            said = (content[0].token or "").strip()
            return Answer(error=f"the judge answered {said!r}, not {' or '.join(q.choices)}",
                          **_usage(response, started))
        return Answer(p_first=odds[first] / total, **_usage(response, started))

    def _ask_json(self, q: Question) -> Answer:
        from openai import BadRequestError

        started = time.perf_counter()
        schema = dict(JSON_SCHEMA)
        schema["properties"] = {**JSON_SCHEMA["properties"],
                                "answer": {"type": "string", "enum": list(q.choices)}}
        try:
            response = self._call(
                messages=q.messages + [{"role": "user", "content": (
                    f'Reply with JSON: {{"answer": "{q.choices[0]}" or "{q.choices[1]}", '
                    '"rationale": "one or two sentences"}')}],
                max_tokens=int(self.sampling.get("max_tokens", 256)),
                temperature=float(self.sampling.get("temperature", 0.0)),
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "verdict", "schema": schema}})
        except BadRequestError as exc:
            if "response_format" in str(exc) or "json_schema" in str(exc):
                raise _Unsupported from None
            raise
        text = _text(response)
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return Answer(error=f"the judge's JSON answer does not parse: {text[:200]!r}",
                          **_usage(response, started))
        said = str(data.get("answer", "")).strip() if isinstance(data, dict) else ""
        if said not in q.choices:
            return Answer(error=f"the judge answered {said!r}, not {' or '.join(q.choices)}",
                          **_usage(response, started))
        return Answer(p_first=1.0 if said == q.choices[0] else 0.0,
                      rationale=str(data.get("rationale") or "") or None,
                      **_usage(response, started))

    def _ask_text(self, q: Question) -> Answer:
        started = time.perf_counter()
        response = self._call(messages=q.messages,
                              max_tokens=int(self.sampling.get("max_tokens", 64)),
                              temperature=float(self.sampling.get("temperature", 0.0)))
        text = _text(response)
        said = _parse_choice(text, q.choices)
        if said is None:
            return Answer(error=f"cannot read {' or '.join(q.choices)} in the answer "
                                f"{text[:200]!r}", **_usage(response, started))
        return Answer(p_first=1.0 if said == q.choices[0] else 0.0,
                      rationale=text.strip()[:2000] or None, **_usage(response, started))

    # -- the call itself ------------------------------------------------------------------

    def _call(self, **kwargs: Any) -> Any:
        import openai

        with self.limiter.slot():
            try:
                return self._client.chat.completions.create(model=self.model, **kwargs)
            except openai.RateLimitError as exc:
                raise TransientError(f"rate limited (429): {_brief(exc)}",
                                     retry_after=_retry_after(exc)) from None
            except openai.InternalServerError as exc:
                raise TransientError(f"server error ({exc.status_code}): {_brief(exc)}",
                                     retry_after=_retry_after(exc)) from None
            except openai.APITimeoutError:
                raise TransientError("the judge endpoint timed out") from None
            except openai.APIConnectionError as exc:
                raise TransientError(f"cannot reach the judge endpoint: {exc}") from None
            except openai.APIResponseValidationError as exc:
                raise TransientError(f"malformed answer from the endpoint: {exc}") from None
            except json.JSONDecodeError:
                raise TransientError("the endpoint answered with malformed JSON") from None


class _Unsupported(Exception):
    """The server cannot answer this way; try the next one."""


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    if not choices:
        raise TransientError("the endpoint gave an empty answer (no choices)")
    return choices[0]


def _text(response: Any) -> str:
    text = (_first_choice(response).message.content or "").strip()
    if not text:
        raise TransientError("the endpoint gave an empty answer")
    return text


def _usage(response: Any, started: float) -> dict[str, int]:
    usage = getattr(response, "usage", None)
    return {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "latency_ms": int((time.perf_counter() - started) * 1000)}


def _parse_choice(text: str, choices: tuple[str, str]) -> str | None:
    """Read an unambiguous choice: the answer's first word, or 'answer: X'."""
    alternatives = "|".join(re.escape(c) for c in choices)
    match = re.match(rf"^\W*({alternatives})\b", text, re.IGNORECASE)
    if match is None:
        match = re.search(rf"\banswer\W+(?:is\W+)?({alternatives})\b", text, re.IGNORECASE)
    if match is None:
        return None
    said = match.group(1)
    return next(c for c in choices if c.lower() == said.lower())


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _brief(exc: Any) -> str:
    return str(getattr(exc, "message", exc))[:200]
