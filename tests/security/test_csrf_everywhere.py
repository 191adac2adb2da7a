"""Every state-changing route refuses a logged-in browser's request that lacks the session's
CSRF token, and changes nothing. The routes come from the app itself, so a new form route
that forgets the check fails this test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.deps import optional_user
from app.auth.service import create_api_token
from app.main import create_app
from tests.support import login, make_project, make_user, sample_items, write

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# Routes that legitimately skip the session's CSRF token, and why.
ALLOWED = {
    ("POST", "/login"): "no session yet: its own double-submit cookie, checked by "
                        "check_login_csrf (tests/auth/test_login_and_csrf.py)",
}

# Plausible form fields and JSON, so a route that forgot the check would act on them.
FORM = {"email": "lee@example.org", "role": "admin", "name": "Renamed", "scopes": "import",
        "mode": "all", "item_id": "1", "choice": "a", "decision": "approve"}


def unsafe_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route that may change state, included routers too."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers: app.routes is flat
        contexts = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    for route in contexts:
        methods = getattr(route, "methods", None) or getattr(
            getattr(route, "original_route", None), "methods", None) or set()
        for method in sorted(set(methods) & UNSAFE):
            yield method, route.path


def fill(path: str, ids: dict[str, object]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", str(value))
    assert "{" not in path, f"no id for a parameter of {path}: add it to the ids"
    return path


def dump(tables) -> dict[str, list]:  # noqa: ANN001
    from app.core.db import session_scope

    with session_scope() as db:
        return {t.name: sorted(map(repr, db.execute(select(t)).all())) for t in tables}


def refused_without_token(client: TestClient, app: FastAPI, ids: dict[str, object],
                          *, token: str | None = None) -> list[str]:
    """The routes that did NOT answer 403 with the CSRF message, as 'METHOD path -> status'."""
    failures = []
    for method, template in unsafe_routes(app):
        if (method, template) in ALLOWED:
            continue
        path = fill(template, ids)
        headers = {"X-CSRF-Token": token} if token else {}
        if path.startswith("/api/"):
            response = client.request(method, path, json={}, headers=headers)
        else:
            data = dict(FORM, csrf_token=token) if token else FORM
            response = client.request(method, path, data=data, follow_redirects=False)
        if response.status_code != 403 or "CSRF" not in response.text:
            failures.append(f"{method} {template} -> {response.status_code}")
    return failures


@pytest.fixture
def site(app_env) -> dict[str, object]:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    lee = make_user("lee@example.org")
    project = make_project(admin, members={"lee@example.org": "labeler"}, items=sample_items(3))
    token = write(create_api_token, user=admin, project_id=project.id, name="t",
                  scopes=["import"])
    # Real rows where we have them; the CSRF check runs before any lookup, so a run id that
    # does not exist must be refused with 403 all the same, never 404.
    return {"project_id": project.id, "member_user_id": lee.id, "token_id": token.token.id,
            "run_id": 1, "action": "cancel"}


def test_every_unsafe_route_refuses_a_session_without_its_csrf_token(site) -> None:  # noqa: ANN001
    import app.models  # noqa: F401
    from app.core.db import Base

    app = create_app()
    routes = list(unsafe_routes(app))
    assert len(routes) > 30 and ("POST", "/projects/{project_id}/members") in routes
    with TestClient(app, base_url="http://testserver") as client:
        login(client, "admin@example.org")
        before = dump(Base.metadata.sorted_tables)
        assert refused_without_token(client, app, site) == []
        assert refused_without_token(client, app, site, token="forged-" + "x" * 30) == []
        after = dump(Base.metadata.sorted_tables)
    assert before == after


def test_a_new_route_that_forgets_the_check_is_caught(site) -> None:  # noqa: ANN001
    app = FastAPI()

    @app.post("/projects/{project_id}/oops")
    def oops(project_id: int, user=Depends(optional_user)) -> dict:  # noqa: ANN001
        return {"changed": project_id}

    with TestClient(app, base_url="http://testserver") as client:
        client.cookies.update(_logged_in_cookies())
        assert refused_without_token(client, app, site) == [
            "POST /projects/{project_id}/oops -> 200"]


def _logged_in_cookies() -> dict[str, str]:
    with TestClient(create_app(), base_url="http://testserver") as real:
        login(real, "admin@example.org")
        return dict(real.cookies)
