"""The OpenAI-compatible provider against a real llama.cpp server (llama-cpp-python's
server on loopback) serving the same SmolLM2 GGUF, with log-probabilities."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from app.judging import service, work
from app.judging.prompts import DEFAULT_TEMPLATE, render_pair
from app.judging.providers.local import SMOLLM2_GGUF, LocalProvider, smollm2_folder
from app.judging.providers.openai_compat import OpenAICompatProvider
from app.judging.schemas import JudgeConfigIn, RunIn
from app.models import AiLabel
from tests.support import make_project, make_user, sample_items, write

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def llama_server():  # noqa: ANN201
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(smollm2_folder() / SMOLLM2_GGUF), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--logits_all", "true"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        else:
            raise AssertionError("llama.cpp server did not start")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_log_probabilities_from_llama_cpp_match_transformers(llama_server) -> None:  # noqa: ANN001
    questions = [render_pair(DEFAULT_TEMPLATE, rules=[], prompt="Can you help me?",
                             response_a=a, response_b=b)
                 for a, b in (("Get lost.", "Thank you, happy to help."),
                              ("Thank you, happy to help.", "Get lost."))]
    remote = OpenAICompatProvider(base_url=llama_server, model="smollm2", api_key_env=None)
    answers = remote.answer(questions)
    assert remote.mode == "logprobs"
    local = LocalProvider().answer(questions)
    for remote_answer, local_answer in zip(answers, local, strict=True):
        # The server runs the quantised weights, transformers the de-quantised ones.
        assert remote_answer.p_first == pytest.approx(local_answer.p_first, abs=0.06)
        assert remote_answer.prompt_tokens > 20


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_judge_run_against_llama_cpp(llama_server, app_env, db) -> None:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(2), rules=[("kind", "Be kind")])
    write(service.update_config, project=project, data=JudgeConfigIn(
        provider="openai", model="smollm2", base_url=llama_server, template=DEFAULT_TEMPLATE,
        batch_size=2, max_concurrency=2))
    run = write(service.start_run, project=project, user=admin, data=RunIn())
    for batch in work.dispatch(run_id=run.id):
        work.judge_batch(run_id=run.id, item_ids=batch)
    labels = db.query(AiLabel).filter(AiLabel.run_id == run.id).all()
    assert len(labels) == 2
    for label in labels:
        assert 0 < label.p_a_first < 1 and 0 < label.p_a_second < 1
        assert set(label.rule_verdicts) == {str(label.response_a_id), str(label.response_b_id)}
        assert label.prompt_tokens > 0
