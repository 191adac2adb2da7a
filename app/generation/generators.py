"""Models that write responses: a local transformers model (or a trained checkpoint), or
an OpenAI-compatible chat endpoint. Each gets a conversation and returns k answers."""

from __future__ import annotations

import os
from typing import Any, Protocol


class Generator(Protocol):
    def generate(self, conversation: list[dict[str, str]], k: int) -> list[str]:
        ...


class LocalGenerator:
    """Sampling from a causal LM: the default SmolLM2, a folder, a hub name or a checkpoint."""

    def __init__(self, model: str, sampling: dict[str, Any]) -> None:
        self.model, self.sampling = model, sampling

    def generate(self, conversation: list[dict[str, str]], k: int) -> list[str]:
        import torch

        from app.judging.providers.local import load_model

        tokenizer, lm = load_model(self.model)
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(conversation, tokenize=False,
                                                 add_generation_prompt=True)
        else:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in conversation) + \
                "\n\nassistant: "
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        seed = self.sampling.get("seed")
        if seed is not None:
            torch.manual_seed(int(seed))
        temperature = float(self.sampling.get("temperature", 0.8))
        with torch.no_grad():
            out = lm.generate(
                **inputs, max_new_tokens=int(self.sampling.get("max_new_tokens", 256)),
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_p=float(self.sampling.get("top_p", 0.95)) if temperature > 0 else None,
                num_return_sequences=k, pad_token_id=tokenizer.pad_token_id)
        prompt_len = inputs["input_ids"].shape[1]
        return [tokenizer.decode(seq[prompt_len:], skip_special_tokens=True).strip()
                for seq in out]


class OpenAIGenerator:
    """k calls to an OpenAI-compatible /chat/completions (servers differ on ``n``)."""

    def __init__(self, *, base_url: str | None, model: str, api_key_env: str | None,
                 sampling: dict[str, Any]) -> None:
        from openai import OpenAI

        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.client = OpenAI(base_url=base_url, api_key=key or "not-needed", max_retries=3,
                             timeout=float(sampling.get("request_timeout_s", 120)))
        self.model, self.sampling = model, sampling

    def generate(self, conversation: list[dict[str, str]], k: int) -> list[str]:
        out = []
        seed = self.sampling.get("seed")
        for n in range(k):
            reply = self.client.chat.completions.create(
                model=self.model, messages=conversation,
                temperature=float(self.sampling.get("temperature", 0.8)),
                top_p=float(self.sampling.get("top_p", 0.95)),
                max_tokens=int(self.sampling.get("max_new_tokens", 256)),
                seed=None if seed is None else int(seed) + n)
            out.append((reply.choices[0].message.content or "").strip())
        return out


def build_generator(*, provider: str, model: str, base_url: str | None,
                    api_key_env: str | None, sampling: dict[str, Any]) -> Generator:
    if provider == "openai":
        return OpenAIGenerator(base_url=base_url, model=model, api_key_env=api_key_env,
                               sampling=sampling)
    return LocalGenerator(model, sampling)
