"""Importing from the browser form, the JSON API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import func, select

from app.auth.service import create_api_token, revoke_api_token
from app.models import Item, Response
from tests.support import ROOT, login, make_project, make_user, sample_items, write


def to_jsonl(items) -> bytes:  # noqa: ANN001
    return "\n".join(json.dumps(i) for i in items).encode()


def count_items(db, project_id: int) -> int:  # noqa: ANN001
    db.rollback()
    return db.scalar(select(func.count()).select_from(Item).where(Item.project_id == project_id))


def test_upload_imports_items_and_a_second_upload_changes_nothing(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    csrf = login(client, "admin@example.org")
    data = to_jsonl(sample_items(5, responses=3))
    first = client.post(f"/projects/{project.id}/import", data={"csrf_token": csrf},
                        files={"file": ("items.jsonl", data)})
    assert first.status_code == 200
    assert "Imported 5 new items" in first.text
    again = client.post(f"/projects/{project.id}/import", data={"csrf_token": csrf},
                        files={"file": ("items.jsonl", data)})
    assert "Imported 0 new items" in again.text and "5 items were already" in again.text
    assert count_items(db, project.id) == 5
    assert db.scalar(select(func.count()).select_from(Response)) == 15


def test_a_file_with_a_bad_line_imports_nothing_and_names_the_line(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    csrf = login(client, "admin@example.org")
    lines = [json.dumps(i) for i in sample_items(4)]
    lines[2] = json.dumps({"prompt": "x", "responses": ["just one"]})
    response = client.post(f"/projects/{project.id}/import", data={"csrf_token": csrf},
                           files={"file": ("items.jsonl", "\n".join(lines).encode())})
    assert response.status_code == 422
    assert "Nothing was imported" in response.text
    assert "<td>3</td><td>too few responses: 1" in response.text
    assert count_items(db, project.id) == 0


def test_unknown_file_type_is_a_clear_error(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    csrf = login(client, "admin@example.org")
    response = client.post(f"/projects/{project.id}/import", data={"csrf_token": csrf},
                           files={"file": ("items.xlsx", b"PK...")})
    assert response.status_code == 400 and "name it .jsonl or .csv" in response.text


def test_api_import_with_a_project_token(client, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    other = make_project(admin, name="Other")
    token = write(create_api_token, user=admin, project_id=project.id, name="ci",
                  scopes=["import"]).secret
    auth = {"Authorization": f"Bearer {token}"}
    body = {"items": sample_items(3)}
    ok = client.post(f"/api/v1/projects/{project.id}/items", json=body, headers=auth)
    assert ok.status_code == 200 and ok.json()["created"] == 3
    assert client.post(f"/api/v1/projects/{project.id}/items", json=body,
                       headers=auth).json() == {**ok.json(), "created": 0, "unchanged": 3}
    bad = client.post(f"/api/v1/projects/{project.id}/items",
                      json={"items": [{"prompt": "x"}]}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"line": 1, "message": "missing field 'responses'"}]
    mixed = client.post(f"/api/v1/projects/{project.id}/items",
                        json={"items": [sample_items(1, start=9)[0], 5]}, headers=auth)
    assert mixed.status_code == 422
    assert mixed.json()["errors"] == [
        {"line": 2, "message": "wrong type: expected a JSON object, not int"}]
    # A token works on its own project only, and only for its scopes.
    assert client.post(f"/api/v1/projects/{other.id}/items", json=body,
                       headers=auth).status_code == 403
    assert client.get(f"/api/v1/projects/{project.id}/export", headers=auth).status_code == 403
    assert count_items(db, other.id) == 0


def test_revoked_token_stops_working_at_once(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(1))
    issued = write(create_api_token, user=admin, project_id=project.id, name="ci",
                   scopes=["read"])
    auth = {"Authorization": f"Bearer {issued.secret}"}
    assert client.get(f"/api/v1/projects/{project.id}", headers=auth).status_code == 200
    write(revoke_api_token, project_id=project.id, token_id=issued.token.id)
    assert client.get(f"/api/v1/projects/{project.id}", headers=auth).status_code == 401
    assert client.get(f"/api/v1/projects/{project.id}",
                      headers={"Authorization": "Bearer tdm_made-up"}).status_code == 401


def test_cli_import_reports_bad_lines_and_imports_good_files(app_env, tmp_path, db) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin)
    env = dict(__import__("os").environ, **app_env.env)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(to_jsonl(sample_items(2)) + b"\n{oops\n")
    run = subprocess.run([sys.executable, "-m", "app.cli", "import", str(project.id), str(bad)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert f"{bad}:3: invalid JSON" in run.stderr and "nothing was imported" in run.stderr
    good = tmp_path / "good.csv"
    good.write_text("prompt,response_1,response_2\nWhy?,Because.,No idea.\n")
    run = subprocess.run([sys.executable, "-m", "app.cli", "import", str(project.id), str(good)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "imported 1 new items" in run.stdout
    assert count_items(db, project.id) == 1
