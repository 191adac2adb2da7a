"""Tiny, seeded models built offline in seconds: a byte-level BPE tokenizer with a chat
template, a 2-layer Llama causal LM and a 2-layer Llama reward model (one score per sequence).

They exist to prove that trainers accept our files, not to learn anything. Each builder is
idempotent (a folder that already holds a complete build is returned as is) and writes into a
temporary sibling folder first, so a crash never leaves a half-built folder that looks complete.

Build from the command line (in a fresh process, away from pytest's warning filters)::

    python -m tests.tiny_models ROOT    # ROOT/causal-lm and ROOT/reward-model; prints JSON
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

SEED = 1234
VOCAB_SIZE = 640
MAX_POSITIONS = 512

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# The prompt rendered with add_generation_prompt is a token-exact prefix of the prompt plus a
# reply, so DPO finds the completion where the two diverge without losing prompt tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_MODEL_FILES = (*_TOKENIZER_FILES, "config.json", "model.safetensors")

_PASSAGE = """\
People compare two answers to the same question and say which one they prefer. A good answer
is helpful, honest and kind; it follows the instructions, cites what it knows and admits what
it does not. A poor answer is rude, wrong, vague or far too long. The labelers read the
prompt, read both responses, and pick the better one, or mark a tie when neither wins.
An AI judge does the same work quickly, but it has a position bias, so every pair is judged
in both orders and the two verdicts are averaged. When people and the judge disagree, a
person reviews the item before it goes into the training set.
The export writes one row per pair: the prompt, the chosen response and the rejected
response, with an optional margin that says how strongly the preference holds. A reward
model learns to score the chosen response above the rejected one; direct preference
optimisation trains the policy itself, without a separate reward model.
"""

_SUBJECTS = ("The assistant", "A user", "The judge", "Each labeler", "The model", "Our team")
_VERBS = ("writes", "reads", "explains", "summarises", "checks", "compares", "answers")
_OBJECTS = (
    "a short poem about the sea",
    "the weather in Paris today",
    "two numbers: 12 and 345",
    "a recipe for bread with flour, water and salt",
    "why the sky is blue",
    "the rules of chess",
    "a polite reply to an angry email",
    "the capital of France",
)


def _training_text() -> Iterator[str]:
    """About 10 KB of plain English: a passage and every subject/verb/object sentence."""
    yield from _PASSAGE.splitlines()
    for subject, verb, obj in itertools.product(_SUBJECTS, _VERBS, _OBJECTS):
        yield f"{subject} {verb} {obj}. Is it right? Yes, thank you!"
    yield "0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 - + = ( ) [ ] { } : ; ' \" ? ! , ."


def _is_complete(path: Path, files: tuple[str, ...]) -> bool:
    return all((path / name).is_file() for name in files)


def _build_atomically(path: Path, files: tuple[str, ...], build: Callable[[Path], None]) -> Path:
    """Run ``build`` into a temporary sibling folder, then move it to ``path``."""
    path = Path(path)
    if _is_complete(path, files):
        return path
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} holds files but not a complete build; remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from a worker run as another user
    try:
        build(staging)
        if path.exists():
            path.rmdir()  # empty (checked above); rename cannot replace it otherwise on every OS
        os.replace(staging, path)
    except OSError:
        # Another process finished the same build first: theirs is as good as ours.
        if not _is_complete(path, files):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _save_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[PAD, BOS, EOS, UNK, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=MAX_POSITIONS,
        chat_template=CHAT_TEMPLATE,
    )
    wrapped.save_pretrained(path)


def _llama_config(tokenizer_dir: Path, **overrides: object):  # noqa: ANN202
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **overrides,
    )


def _save_model(path: Path, model_class_name: str, **config_overrides: object) -> None:
    import torch
    import transformers

    _save_tokenizer(path)
    config = _llama_config(path, **config_overrides)
    torch.manual_seed(SEED)
    model = getattr(transformers, model_class_name)(config).to(torch.float32)
    model.save_pretrained(path)


def build_tiny_tokenizer(path: Path) -> Path:
    """Save a byte-level BPE tokenizer (vocab 640, bos/eos/pad, chat template) in ``path``."""
    return _build_atomically(path, _TOKENIZER_FILES, _save_tokenizer)


def build_tiny_causal_lm(path: Path) -> Path:
    """Save the tiny tokenizer and a seeded 2-layer ``LlamaForCausalLM`` in ``path``."""
    return _build_atomically(
        path, _MODEL_FILES, lambda staging: _save_model(staging, "LlamaForCausalLM")
    )


def build_tiny_reward_model(path: Path) -> Path:
    """Save the tiny tokenizer and a seeded 2-layer ``LlamaForSequenceClassification`` with
    one output (the reward) in ``path``."""
    return _build_atomically(
        path,
        _MODEL_FILES,
        lambda staging: _save_model(staging, "LlamaForSequenceClassification", num_labels=1),
    )


def build_tiny_models(root: Path) -> dict[str, Path]:
    """Build (or reuse) both models under ``root``: ``causal-lm/`` and ``reward-model/``."""
    return {
        "causal-lm": build_tiny_causal_lm(Path(root) / "causal-lm"),
        "reward-model": build_tiny_reward_model(Path(root) / "reward-model"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to hold causal-lm/ and reward-model/")
    args = parser.parse_args(argv)
    built = build_tiny_models(args.root)
    print(json.dumps({kind: str(path) for kind, path in built.items()}))


if __name__ == "__main__":
    main()
