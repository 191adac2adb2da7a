"""The judge pages: configure, preview on a real item, start, watch, cancel and resume."""

from __future__ import annotations

import re

from app.judging import work
from app.judging.prompts import DEFAULT_TEMPLATE
from tests.judging.fake_openai import FakeOpenAI, completion
from tests.judging.test_judge_runs import run_inline
from tests.support import login, make_project, make_user, sample_items


def form(fake: FakeOpenAI, **overrides) -> dict:  # noqa: ANN003
    return {"provider": "openai", "model": "judge-1", "base_url": fake.base_url,
            "api_key_env": "JUDGE_KEY", "template": DEFAULT_TEMPLATE, "temperature": "0",
            "max_tokens": "64", "top_logprobs": "5", "confidence_threshold": "0.7",
            "review_fraction": "0", "max_concurrency": "2", "requests_per_minute": "6000",
            "batch_size": "2", **overrides}


def test_admin_configures_previews_and_runs_the_judge(client, app_env, monkeypatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-in-env-only")
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(4), rules=[("kind", "Be kind")])
    csrf = login(client, "admin@example.org")
    with FakeOpenAI() as fake:
        fake.default = ("json", completion("A", logprobs={"A": 0.8, "B": 0.2}))
        saved = client.post(f"/projects/{project.id}/judge/config",
                            data={"csrf_token": csrf, **form(fake)}, follow_redirects=False)
        assert saved.status_code == 303
        page = client.get(f"/projects/{project.id}/judge").text
        assert fake.base_url in page and "sk-secret-in-env-only" not in page

        preview = client.post(f"/projects/{project.id}/judge/preview",
                              data={"csrf_token": csrf, **form(fake),
                                    "preview_external_id": "item-2"},
                              headers={"HX-Request": "true"})
        assert preview.status_code == 200
        assert "Question number 2?" in preview.text and "[kind] (medium) Be kind" in preview.text
        preview_id = int(re.search(r'id="preview-(\d+)"', preview.text).group(1))
        work.run_preview(preview_id=preview_id)  # what the worker does
        shown = client.get(f"/projects/{project.id}/judge/previews/{preview_id}").text
        assert "Orders agree" in shown and "no" in shown and "human" in shown

        started = client.post(f"/projects/{project.id}/judge/runs",
                              data={"csrf_token": csrf, "mode": "all"}, follow_redirects=False)
        assert started.status_code == 303
        run_id = int(started.headers["location"].rsplit("/", 1)[1])
        queued = client.get(started.headers["location"]).text
        assert "0 judged" in queued and "hx-trigger=\"load delay:1s\"" in queued
        cancelled = client.post(f"/projects/{project.id}/judge/runs/{run_id}/cancel",
                                data={"csrf_token": csrf}, headers={"HX-Request": "true"})
        assert 'class="run-status">cancelled' in cancelled.text
        client.post(f"/projects/{project.id}/judge/runs/{run_id}/resume",
                    data={"csrf_token": csrf}, headers={"HX-Request": "true"})
        run_inline(run_id)
        done = client.get(f"/projects/{project.id}/judge/runs/{run_id}").text
        assert 'class="run-status">succeeded' in done and "4 judged" in done
        assert "hx-trigger" not in done.split('id="judge-run-')[1].split(">")[0]


def test_bad_judge_settings_are_refused_with_a_reason(client, app_env) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(1))
    csrf = login(client, "admin@example.org")
    with FakeOpenAI() as fake:
        sandbox = client.post(f"/projects/{project.id}/judge/config", data={
            "csrf_token": csrf, **form(fake, template="{{ ''.__class__.__mro__ }}")})
        assert sandbox.status_code == 400 and "refused by the sandbox" in sandbox.text
        key = client.post(f"/projects/{project.id}/judge/config", data={
            "csrf_token": csrf, **form(fake, api_key_env="sk-abc123-real-key")})
        assert key.status_code == 400 and "NAME of the environment variable" in key.text


def test_labelers_cannot_open_the_judge_pages(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"})
    login(client, "lee@example.org")
    assert client.get(f"/projects/{project.id}/judge").status_code == 403
