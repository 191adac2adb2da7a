"""A reward model as judge: it scores each response to the conversation on its own, and
the preference is sigmoid(r_first - r_second). No position bias by construction, and no
prompt template: the model reads the conversation and the response, nothing else."""

from __future__ import annotations

import math
import threading
import time
from functools import lru_cache
from typing import Any

from app.judging.prompts import Question
from app.judging.providers.base import Answer

_lock = threading.Lock()
MAX_LENGTH = 2048


@lru_cache(maxsize=2)
def load_reward_model(path: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with _lock:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
        model.eval()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return tokenizer, model


class RewardModelProvider:
    name = "reward"

    def __init__(self, model: str, *, batch_size: int = 8) -> None:
        if not model:
            raise ValueError("a reward-model judge needs a checkpoint folder")
        self.model, self.batch_size = model, max(1, batch_size)

    def identity(self) -> str:
        return f"reward:{self.model}"

    def _text(self, tokenizer: Any, conversation: tuple[dict[str, str], ...],
              response: str) -> str:
        messages = [*conversation, {"role": "assistant", "content": response}]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def score(self, texts: list[str]) -> tuple[list[float], int]:
        """Rewards for whole texts, in batches; and how many tokens were read."""
        import torch

        tokenizer, model = load_reward_model(self.model)
        scores: list[float] = []
        tokens = 0
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(texts[start:start + self.batch_size], return_tensors="pt",
                              padding=True, truncation=True, max_length=MAX_LENGTH)
            tokens += int(batch["attention_mask"].sum())
            with torch.no_grad():
                logits = model(**batch).logits
            scores.extend(float(x) for x in logits[:, 0])
        return scores, tokens

    def answer(self, questions: list[Question]) -> list[Answer]:
        started = time.monotonic()
        tokenizer, _ = load_reward_model(self.model)
        wanted: dict[str, int] = {}
        for q in questions:
            if q.conversation is not None and q.first is not None and q.second is not None:
                for response in (q.first, q.second):
                    text = self._text(tokenizer, q.conversation, response)
                    wanted.setdefault(text, len(wanted))
        # Each response is scored once, however many pairs and orders it appears in.
        scores, tokens = self.score(list(wanted)) if wanted else ([], 0)
        elapsed = int((time.monotonic() - started) * 1000)
        answers = []
        for q in questions:
            if q.conversation is None or q.first is None or q.second is None:
                answers.append(Answer(error="a reward model scores responses; it does not "
                                            "answer rule questions (turn rule checks off)"))
                continue
            r1 = scores[wanted[self._text(tokenizer, q.conversation, q.first)]]
            r2 = scores[wanted[self._text(tokenizer, q.conversation, q.second)]]
            answers.append(Answer(p_first=1 / (1 + math.exp(-(r1 - r2))),
                                  prompt_tokens=tokens // max(1, len(questions)),
                                  latency_ms=elapsed // max(1, len(questions)),
                                  extra={"rewards": [r1, r2]}))
        return answers
