"""Export snapshots: every format loads with `datasets`, TRL trains on them, and a
snapshot never changes once made."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from app.auth.service import create_api_token
from app.exports.snapshots import build_snapshot
from app.exports.writers import sha256_of
from tests.support import label_all, make_project, make_user, write
from tests.trl_support import run_trl_step

CHAT = [{"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What does a compiler do?"}]


def rated_items(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"external_id": f"q{i}",
             "prompt": CHAT if i % 3 == 0 else f"Question {i}: why?",
             "responses": [f"Best answer {i}.", f"Middling answer {i}.", f"Poor answer {i}."],
             "metadata": {"tags": ["even"] if i % 2 == 0 else ["odd"]}}
            for i in range(start, start + n)]


def rate(task) -> dict[str, Any]:  # noqa: ANN001
    """Best 6, middling 4 (middling 6 on q1: a tie with the best), poor 2; edit odd items."""
    best, mid, poor = task.responses
    i = int(task.item.external_id[1:])
    fields: dict[str, Any] = {"ratings": {best.id: 6, mid.id: 6 if i == 1 else 4, poor.id: 2}}
    if i % 2:
        fields.update(edit_response_id=poor.id, edit_text=f"A careful answer {i}.")
    return fields


def setup_project(n: int = 6):  # noqa: ANN201
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="rate_and_edit", items=rated_items(n))
    label_all(project, admin, rate)
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["export"]).secret
    return admin, project, {"Authorization": f"Bearer {token}"}


def snapshot(client, headers, project_id: int, **spec) -> dict[str, Any]:  # noqa: ANN001, ANN003
    made = client.post(f"/api/v1/projects/{project_id}/snapshots", json=spec, headers=headers)
    assert made.status_code == 202, made.text
    assert made.json()["status"] == "queued"
    build_snapshot(snapshot_id=made.json()["id"])  # the Celery task's body, run here
    got = client.get(f"/api/v1/projects/{project_id}/snapshots/{made.json()['id']}",
                     headers=headers).json()
    assert got["status"] == "succeeded", got
    return got


def fetch(client, headers, snap: dict, name: str, folder: Path) -> Path:  # noqa: ANN001
    response = client.get(
        f"/api/v1/projects/{snap['project_id']}/snapshots/{snap['id']}/files/{name}",
        headers=headers)
    assert response.status_code == 200, response.text
    path = folder / f"{snap['id']}-{name}"
    path.write_bytes(response.content)
    return path


def load(path: Path) -> list[dict[str, Any]]:
    import datasets

    kind = "parquet" if path.suffix == ".parquet" else "json"
    ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    return [dict(r) for r in ds]


@pytest.mark.parametrize("container", ["jsonl", "parquet"])
def test_every_format_loads_with_datasets(client, tmp_path, container) -> None:
    _, project, headers = setup_project()
    # 6 items x 3 ordered pairs (q1: 2, a tie) + 3 edits (odd items) = 20 pairs
    rows = {}
    for fmt in ("standard", "conversational", "kto", "kto_conversational", "sft", "openai",
                "tandem"):
        snap = snapshot(client, headers, project.id, format=fmt, container=container)
        assert snap["files"] == [f"train.{container}", "manifest.json", "README.md"]
        rows[fmt] = load(fetch(client, headers, snap, f"train.{container}", tmp_path))
        assert len(rows[fmt]) == snap["rows"] == snap["manifest"]["counts"]["rows"]

    standard = rows["standard"]
    assert len(standard) == 20
    assert set(standard[0]) == {"prompt", "chosen", "rejected", "margin"}
    assert {"prompt": "Question 1: why?", "chosen": "A careful answer 1.",
            "rejected": "Poor answer 1.", "margin": 1.0} in standard
    assert {r["margin"] for r in standard} == {1.0, 2.0}  # rating gaps: 2 -> 1 "clearly" = 2
    assert rows["conversational"][0]["prompt"] == CHAT
    assert rows["conversational"][0]["chosen"] == [{"role": "assistant",
                                                     "content": "Best answer 0."}]
    kto = rows["kto"]
    assert {(r["completion"], r["label"]) for r in kto if r["prompt"] == "Question 2: why?"} == {
        ("Best answer 2.", True), ("Poor answer 2.", False)}  # the middle one says nothing
    assert rows["kto_conversational"][0]["completion"][0]["role"] == "assistant"
    assert [r["messages"][-1]["content"] for r in rows["sft"]] == [
        "A careful answer 1.", "A careful answer 3.", "A careful answer 5."]
    assert rows["sft"][0]["messages"][0] == {"role": "user", "content": "Question 1: why?"}
    openai = rows["openai"][0]
    assert openai["input"]["messages"] == CHAT
    assert openai["preferred_output"] == [{"role": "assistant", "content": "Best answer 0."}]
    assert openai["non_preferred_output"][0]["role"] == "assistant"
    tandem = rows["tandem"]
    if container == "parquet":  # nested parts are JSON text columns in Parquet
        tandem = [{k: v if k == "external_id" else json.loads(v) for k, v in r.items()}
                  for r in tandem]
    assert len(tandem) == 6 and all(len(r["labels"]) == 1 for r in tandem)
    assert tandem[1]["responses"][3] == {"text": "A careful answer 1.", "model": None,
                                         "source": "human_edit", "parent": 2,
                                         "created_by": "admin@example.org"}


def test_a_snapshot_never_changes_and_the_next_version_lists_what_is_new(
        client, tmp_path, app_env) -> None:
    admin, project, headers = setup_project(4)
    first = snapshot(client, headers, project.id, format="standard")
    folder = app_env.data_dir / "exports" / f"project-{project.id}" / f"snapshot-{first['id']}"
    data = folder / "train.jsonl"
    before = data.read_bytes()
    assert sha256_of(data) == first["manifest"]["files"][0]["sha256"]
    assert not os.stat(data).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    # More labels arrive, and the same choices are made again: version 2.
    from app.items.service import import_records

    write(lambda db: import_records(db, project=project, user=admin,
                                    records=rated_items(2, start=10)))
    label_all(project, admin, rate, key="more")
    second = snapshot(client, headers, project.id, format="standard")
    assert (second["lineage"], second["version"]) == (first["lineage"], 2)
    assert data.read_bytes() == before
    again = client.get(f"/api/v1/projects/{project.id}/snapshots/{first['id']}",
                       headers=headers).json()
    assert again["sha256"] == first["sha256"] and again["manifest"] == first["manifest"]

    diff = client.get(f"/api/v1/projects/{project.id}/snapshots/{second['id']}/compare/"
                      f"{first['id']}", headers=headers).json()
    assert diff["removed"] == 0
    assert diff["added"] == second["rows"] - first["rows"] == 7  # q10: 3 pairs, q11: 3 + edit
    assert {r["prompt"] for r in diff["added_sample"]} == {"Question 10: why?",
                                                          "Question 11: why?"}
    # A different choice is a different lineage, starting at version 1.
    other = snapshot(client, headers, project.id, format="standard", container="parquet")
    assert other["version"] == 1 and other["lineage"] != first["lineage"]


def test_manifest_and_dataset_card_describe_the_snapshot(client, tmp_path) -> None:
    _, project, headers = setup_project()
    snap = snapshot(client, headers, project.id, format="conversational",
                    filters={"sources": ["human"], "tag": "even"},
                    split={"test_fraction": 0.5, "seed": 3})
    manifest = snap["manifest"]
    assert manifest["filters"] == {"sources": ["human"], "tag": "even"}
    assert manifest["counts"]["items"] == 3 and manifest["counts"]["left_out_by_tag"] == 3
    assert manifest["counts"]["pairs_by_source"] == {"human": 9}
    assert manifest["schema"]["prompt"].startswith("list<")
    assert manifest["code_version"].startswith("tandem ")
    files = {f["name"]: f for f in manifest["files"]}
    assert set(files) == {"train.jsonl", "test.jsonl"}
    card = fetch(client, headers, snap, "README.md", tmp_path).read_text()
    assert "pairs: 9" in card and files["train.jsonl"]["sha256"] in card
    assert "split: train" in card and "split: test" in card


def test_split_is_seeded_and_keeps_each_prompt_on_one_side(client, tmp_path) -> None:
    admin = make_user("admin@example.org", admin=True)
    # 40 prompts, each asked twice (two items), so each prompt has several pairs.
    items = [{"external_id": f"x{i}-{copy}", "prompt": f"Prompt {i}",
              "responses": [f"good {i} {copy}", f"bad {i} {copy}"]}
             for i in range(40) for copy in range(2)]
    project = make_project(admin, items=items)
    label_all(project, admin, lambda t: {"choice": "a", "strength": 1})
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["export"]).secret
    headers = {"Authorization": f"Bearer {token}"}

    def sides(seed: int) -> dict[str, set[str]]:
        snap = snapshot(client, headers, project.id, split={"test_fraction": 0.25, "seed": seed})
        return {side: {r["prompt"] for r in load(fetch(client, headers, snap,
                                                         f"{side}.jsonl", tmp_path))}
                for side in ("train", "test")}

    first, again, other = sides(1), sides(1), sides(2)
    assert first == again
    assert not first["train"] & first["test"]
    assert len(first["train"] | first["test"]) == 40
    assert 4 <= len(first["test"]) <= 18
    assert first != other


@pytest.mark.parametrize("backend", ["sqlite"])
def test_trl_trainers_take_one_step_on_exported_files(client, tmp_path, tiny_models) -> None:
    _, project, headers = setup_project()
    for fmt, conversational in (("standard", False), ("conversational", True)):
        snap = snapshot(client, headers, project.id, format=fmt)
        path = fetch(client, headers, snap, "train.jsonl", tmp_path)
        for trainer, model in (("dpo", "causal-lm"), ("reward", "reward-model")):
            result = run_trl_step(trainer, tiny_models[model], path, tmp_path / trainer)
            assert result["steps"] == 1 and result["rows"] == 20
            assert result["conversational"] is conversational
            assert result["loss"] == result["loss"]  # a number, not NaN


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_makes_a_snapshot(app_env, tmp_path) -> None:
    import subprocess
    import sys

    _, project, _ = setup_project(3)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "export", str(project.id), "--format", "kto",
         "--container", "parquet", "-o", str(out)],
        capture_output=True, text=True, env=dict(os.environ, **app_env.env), timeout=120)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["version"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "manifest.json",
                                                     "train.parquet"]
    assert len(load(out / "train.parquet")) == summary["rows"] > 0
    bad = subprocess.run([sys.executable, "-m", "app.cli", "export", str(project.id),
                          "--source", "robots", "-o", str(out)], capture_output=True,
                         text=True, env=dict(os.environ, **app_env.env), timeout=60)
    assert bad.returncode != 0 and "source must be" in bad.stderr


def test_filters_agreement_rule_set_dates_and_confidence(client, app_env) -> None:
    from app.projects.schemas import RuleIn
    from app.projects.service import set_rules

    admin = make_user("admin@example.org", admin=True)
    for name in ("ann", "bob"):
        make_user(f"{name}@example.org")
    project = make_project(admin, k=3, items=[
        {"external_id": f"f{i}", "prompt": f"Filter {i}", "responses": ["yes", "no"]}
        for i in range(4)], rules=[("r1", "Be right")],
        members={"ann@example.org": "labeler", "bob@example.org": "labeler"})
    from app.core.db import session_scope
    from app.models import User

    with session_scope() as db:
        people = {u.email.split("@")[0]: u for u in db.query(User).all()}
    # f0, f1: all three agree; f2, f3: two of three
    label_all(project, people["admin"], lambda t: {"choice": "a", "strength": 1})
    label_all(project, people["ann"], lambda t: {"choice": "a", "strength": 1})
    write(set_rules, project=project, rules=[RuleIn(id="r1", text="Be right, always")])
    label_all(project, people["bob"], lambda t: {
        "choice": "a" if t.item.external_id in ("f0", "f1") else "b", "strength": 1})
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["export"]).secret
    headers = {"Authorization": f"Bearer {token}"}

    def rows(**filters) -> int:  # noqa: ANN003
        return snapshot(client, headers, project.id, filters=filters)["rows"]

    assert rows() == 4
    assert rows(min_agreement=0.9) == 2
    assert rows(min_agreement=0.6) == 4
    assert rows(rule_set_version=2) == 4  # the last label was made under version 2
    assert rows(rule_set_version=1) == 0
    assert rows(rule_set_version=7) == 0
    assert rows(until="2000-01-01T00:00:00") == 0
    assert rows(since="2000-01-01T00:00:00") == 4
    assert rows(sources=["ai_accepted"]) == 0
    bad = client.post(f"/api/v1/projects/{project.id}/snapshots", headers=headers,
                      json={"filters": {"min_agreement": 3}})
    assert bad.status_code == 422 and "min_agreement" in bad.text
    bad = client.post(f"/api/v1/projects/{project.id}/snapshots", headers=headers,
                      json={"format": "csv"})
    assert bad.status_code == 422


def test_min_confidence_filters_unreviewed_ai_labels(client) -> None:
    from tests.judging.fake_openai import FakeOpenAI
    from tests.judging.test_reviews import judged_project

    with FakeOpenAI() as fake:
        project = judged_project(fake, items=3, review_fraction=0.0)  # P(A) = 0.95: accepted
    from app.core.db import session_scope
    from app.models import User

    with session_scope() as db:
        admin = db.query(User).filter_by(email="admin@example.org").one()
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["export"]).secret
    headers = {"Authorization": f"Bearer {token}"}
    confident = snapshot(client, headers, project.id, filters={"min_confidence": 0.9})
    assert confident["rows"] == 3
    assert confident["manifest"]["counts"]["pairs_by_source"] == {"ai_accepted": 3}
    assert snapshot(client, headers, project.id, filters={"min_confidence": 0.99})["rows"] == 0


def test_a_redelivered_build_leaves_a_live_one_alone_and_takes_over_a_silent_one(
        client, app_env) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.core.db import session_scope
    from app.models import ExportSnapshot
    from app.models.types import utcnow

    admin, project, headers = setup_project(3)
    made = client.post(f"/api/v1/projects/{project.id}/snapshots", json={},
                       headers=headers).json()

    def mark(**values) -> None:  # noqa: ANN003
        with session_scope(write=True) as db:
            db.execute(update(ExportSnapshot).where(ExportSnapshot.id == made["id"])
                       .values(**values))

    # Another copy is building it right now (it reported a moment ago): hands off.
    mark(status="running", owner="other-copy", heartbeat_at=utcnow())
    build_snapshot(snapshot_id=made["id"])
    got = client.get(f"/api/v1/projects/{project.id}/snapshots/{made['id']}",
                     headers=headers).json()
    assert got["status"] == "running" and got["manifest"] is None
    # That copy went silent long ago (its worker died): the redelivered copy takes over.
    mark(heartbeat_at=utcnow() - timedelta(hours=1))
    build_snapshot(snapshot_id=made["id"])
    done = client.get(f"/api/v1/projects/{project.id}/snapshots/{made['id']}",
                      headers=headers).json()
    assert done["status"] == "succeeded" and done["rows"] == 9  # 3 + 2 (a tie) + 3 + 1 edit
    # A late copy of a finished build changes nothing.
    build_snapshot(snapshot_id=made["id"])
    again = client.get(f"/api/v1/projects/{project.id}/snapshots/{made['id']}",
                       headers=headers).json()
    assert again["sha256"] == done["sha256"] and again["status"] == "succeeded"
    folder = app_env.data_dir / "exports" / f"project-{project.id}"
    assert sorted(p.name for p in folder.iterdir()) == [f"snapshot-{made['id']}"]


@pytest.mark.parametrize("fmt", ["standard", "openai", "tandem"])
def test_a_tag_filter_keeps_the_tagged_items_and_counts_the_rest(client, tmp_path,
                                                                 fmt: str) -> None:
    """The tag is read from the item_tags index, in every kind of export (pair rows, records,
    the full-fidelity format): only tagged items' rows, and the others counted as left out."""
    _, project, headers = setup_project()
    snap = snapshot(client, headers, project.id, format=fmt, filters={"tag": "odd"})
    counts = snap["manifest"]["counts"]
    rows = load(fetch(client, headers, snap, "train.jsonl", tmp_path))
    assert rows
    if fmt == "tandem":  # every item: q1, q3, q5 kept of six
        assert sorted(r["external_id"] for r in rows) == ["q1", "q3", "q5"]
        assert counts["items"] == 3 and counts["left_out_by_tag"] == 3
    else:  # q1, q3 (a chat prompt, as q0 is) and q5; never q2 or q4
        prompts = {json.dumps(r["prompt"] if fmt == "standard" else r["input"]) for r in rows}
        assert any("Question 5" in p for p in prompts)
        assert not any(f"Question {i}:" in p for p in prompts for i in (2, 4))
        assert counts["left_out_by_tag"] == counts["items"] == 3
    none = snapshot(client, headers, project.id, format=fmt, filters={"tag": "no-such-tag"})
    assert none["manifest"]["counts"]["items"] == 0
    assert none["manifest"]["counts"]["left_out_by_tag"] == 6
