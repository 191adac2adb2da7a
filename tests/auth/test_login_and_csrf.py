"""Logging in, sessions, CSRF, and who sees which project."""

from __future__ import annotations

from tests.support import csrf_from, login, make_project, make_user, sample_items


def test_login_with_wrong_password_is_refused(client) -> None:
    make_user("ann@example.org")
    page = client.get("/login")
    response = client.post("/login", data={"email": "ann@example.org", "password": "nope-nope",
                                           "csrf_token": csrf_from(page.text)})
    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_login_without_its_csrf_cookie_is_refused(client) -> None:
    make_user("ann@example.org")
    response = client.post("/login", data={"email": "ann@example.org",
                                           "password": "correct-horse-1", "csrf_token": "x" * 32})
    assert response.status_code == 403


def test_login_issues_a_new_session_id_and_logout_ends_it(client) -> None:
    make_user("ann@example.org")
    page = client.get("/login")
    response = client.post("/login", headers={"Cookie": "tandem_session=planted-by-attacker; "
                                              f"tandem_login_csrf={client.cookies['tandem_login_csrf']}"},
                           data={"email": "ann@example.org", "password": "correct-horse-1",
                                 "csrf_token": csrf_from(page.text)}, follow_redirects=False)
    cookie = response.cookies.get("tandem_session")
    assert cookie and cookie != "planted-by-attacker"
    client.cookies.clear()
    client.cookies.set("tandem_session", cookie)
    projects = client.get("/projects")
    assert projects.status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf_from(projects.text)},
                       follow_redirects=False).status_code == 303
    # The old cookie no longer logs anyone in, even if replayed.
    client.cookies.clear()
    client.cookies.set("tandem_session", cookie)
    assert client.get("/projects", follow_redirects=False).status_code == 303


def test_session_cookie_is_httponly_and_samesite(client) -> None:
    make_user("ann@example.org")
    page = client.get("/login")
    response = client.post("/login", data={"email": "ann@example.org",
                                           "password": "correct-horse-1",
                                           "csrf_token": csrf_from(page.text)},
                           follow_redirects=False)
    header = response.headers["set-cookie"].lower()
    assert "tandem_session=" in header and "httponly" in header and "samesite=lax" in header


def test_form_post_without_csrf_token_is_rejected(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(2))
    csrf = login(client, "admin@example.org")
    no_token = client.post(f"/projects/{project.id}/members",
                           data={"email": "admin@example.org", "role": "labeler"})
    wrong = client.post(f"/projects/{project.id}/members",
                        data={"email": "admin@example.org", "role": "labeler",
                              "csrf_token": "forged"})
    assert no_token.status_code == 403 and wrong.status_code == 403
    ok = client.post(f"/projects/{project.id}/members",
                     data={"email": "admin@example.org", "role": "admin", "csrf_token": csrf},
                     follow_redirects=False)
    assert ok.status_code == 303


def test_labeler_sees_only_their_projects(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    mine = make_project(admin, name="Mine", members={"lee@example.org": "labeler"},
                        items=sample_items(2))
    other = make_project(admin, name="Someone else's", items=sample_items(2))
    login(client, "lee@example.org")
    listing = client.get("/projects").text
    assert "Mine" in listing and "Someone else" not in listing
    assert client.get(f"/projects/{mine.id}/label").status_code == 200
    for path in (f"/projects/{other.id}", f"/projects/{other.id}/label",
                 f"/projects/{other.id}/export.jsonl"):
        assert client.get(path).status_code == 404, path


def test_labeler_cannot_open_admin_pages_of_own_project(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"}, items=sample_items(2))
    login(client, "lee@example.org")
    for path in ("settings", "import", "export", "export.jsonl"):
        assert client.get(f"/projects/{project.id}/{path}").status_code == 403, path


def test_pages_carry_security_headers(client) -> None:
    response = client.get("/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    script_src = response.headers["content-security-policy"].split("script-src", 1)[1]
    assert "unsafe-inline" not in script_src.split(";", 1)[0]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
