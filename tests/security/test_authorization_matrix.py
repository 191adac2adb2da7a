"""The authorization matrix: every route, called by every role, lets in exactly the roles it
should; API tokens work only on their project and for their scopes, and stop at revocation.

Runs on both backends (the ``backend`` fixture). Allowed means the policy let the call
through: anything but 401, 403, 404 or a 5xx (a 400 or 422 for a deliberately thin body
counts, since the route checks the policy before it reads the body's meaning); real rows
exist for every id in a path, so an allowed call has no reason to 404.
"""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from app.auth.service import API_SCOPES, create_api_token
from app.models import ApiToken
from tests.security.route_table import (
    LAST,
    MAY,
    PUBLIC,
    SITE_ADMIN,
    TABLE,
    USER,
    WORKER,
    R,
    app_routes,
    compare_query,
    fill,
    training_on_unbuilt_snapshot,
)
from tests.security.world import ROLES, Rows, World, build_world
from tests.support import login, write

SHORT = {"anonymous": "anon", "outsider": "outsdr", "labeler": "label", "reviewer": "review",
         "project_admin": "padmin", "site_admin": "site"}


def expected(route: R, role: str) -> str:
    """'any', 'login', 'allow', '403' or '404'."""
    if route.rule == PUBLIC:
        return "any"
    if role == "anonymous":
        return "login"
    if route.rule == USER:
        return "allow"
    if route.rule == SITE_ADMIN:
        return "allow" if role == "site_admin" else "403"
    if route.rule == WORKER:
        return "403"  # a session, whoever's, is not a training worker
    if role == "outsider":
        return "404"  # a project's existence does not leak to non-members
    return "allow" if role in MAY[route.rule] else "403"


def meets(route: R, outcome: str, response: httpx.Response) -> bool:
    status = response.status_code
    if status >= 500:
        return False
    # The login guard sends a page to /login?next=...; logging out goes to plain /login.
    to_login = (300 <= status < 400
                and response.headers.get("location", "").startswith("/login?next="))
    if outcome == "any":
        return True
    if outcome == "login":
        return status == 401 if route.is_api else (status == 303 and to_login)
    if outcome == "allow":
        return status not in (401, 403, 404) and not to_login
    return status == int(outcome)


def call(world: World, route: R, *, client, project: Rows, rows: Rows,  # noqa: ANN001
         csrf: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = dict(headers or {})
    if route.method != "GET" and csrf:
        sent["X-CSRF-Token"] = csrf  # the session's token: accepted by forms and the API
    return client.request(route.method, fill(route, world, project=project, rows=rows),
                          headers=sent, follow_redirects=False, **route.body(world, rows))


class Matrix:
    """Statuses per route and role; prints as a compact table, mismatches marked '!'."""

    def __init__(self) -> None:
        self.cells: dict[str, dict[str, str]] = {}
        self.bad: list[str] = []

    def record(self, row: str, column: str, response: httpx.Response, ok: bool,
               want: str) -> None:
        self.cells.setdefault(row, {})[column] = f"{response.status_code}{'' if ok else '!'}"
        if not ok:
            self.bad.append(f"{row} as {column}: got {response.status_code}, want {want}: "
                            f"{response.text[:160]!r}")

    def table(self, columns: list[str]) -> str:
        width = max(len(r) for r in self.cells)
        lines = [" " * width + " " + " ".join(f"{SHORT.get(c, c):>7}" for c in columns)]
        for row, cells in self.cells.items():
            lines.append(f"{row:<{width}} " + " ".join(f"{cells.get(c, '-'):>7}"
                                                       for c in columns))
        return "\n".join(lines)

    def assert_clean(self, columns: list[str]) -> None:
        assert not self.bad, ("\n".join(self.bad) + "\n\n" + self.table(columns))


def test_every_route_is_in_the_expectation_table() -> None:
    """A new route must be classified here; a table entry must name a route that exists."""
    from app.main import create_app

    served, declared = app_routes(create_app()), {r.key for r in TABLE}
    assert len(declared) == len(TABLE), "a route is listed twice"
    assert not served - declared, f"routes nobody classified: {sorted(served - declared)}"
    assert not declared - served, f"table rows for routes that are gone: {declared - served}"


def _crosses_projects(route: R) -> bool:
    """Routes that name a row of the project by id (in the path or the body)."""
    names = set(re.findall(r"{(\w+)}", route.path)) - {"project_id", "action"}
    by_body = route.body in (compare_query, training_on_unbuilt_snapshot)
    return "project_id" in route.path and bool(names or by_body)


def test_every_route_lets_in_exactly_the_roles_it_should(client, backend) -> None:  # noqa: ANN001
    world = build_world(client)
    matrix, idor = Matrix(), Matrix()
    # GETs first, then what writes, then what removes rows; logging out comes last of all.
    ordered = sorted(TABLE, key=lambda r: r.phase)
    for route in [r for r in ordered if r.phase != LAST]:
        for role in ROLES:
            response = call(world, route, client=world.clients[role], project=world.p,
                            rows=world.p, csrf=world.csrf.get(role))
            want = expected(route, role)
            matrix.record(f"{route.method} {route.path}", role, response,
                          meets(route, want, response), want)
    # A row of project Q named through project P's path is not found, even by P's admin.
    for route in filter(_crosses_projects, ordered):
        for role in ("project_admin", "site_admin"):
            response = call(world, route, client=world.clients[role], project=world.p,
                            rows=world.q, csrf=world.csrf.get(role))
            idor.record(f"{route.method} {route.path}", role, response,
                        response.status_code == 404, "404")
    for route in [r for r in ordered if r.phase == LAST]:
        for role in ROLES:
            response = call(world, route, client=world.clients[role], project=world.p,
                            rows=world.p, csrf=world.csrf.get(role))
            want = expected(route, role)
            matrix.record(f"{route.method} {route.path}", role, response,
                          meets(route, want, response), want)
    matrix.assert_clean(list(ROLES))
    idor.assert_clean(["project_admin", "site_admin"])
    for role in ROLES[1:]:  # logged out for real: the session no longer opens a page
        assert world.clients[role].get("/projects", follow_redirects=False).status_code == 303


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _token(world: World, rows: Rows, scopes: list[str], user=None) -> str:  # noqa: ANN001
    return write(create_api_token, user=user or rows.admin, project_id=rows.project.id,
                 name="matrix", scopes=scopes).secret


def _worker_token_does_only_a_workers_job(world: World, anon) -> None:  # noqa: ANN001
    """A training attempt's token reads its snapshot and reports on its run, nothing else;
    once the attempt ends (or the run is cancelled) it is refused at once."""
    p, q = world.p, world.q
    worker = _bearer(p.worker_secret)
    matrix = Matrix()
    for route in sorted(TABLE, key=lambda r: r.phase):
        if not route.is_api or route.rule in (WORKER, USER):
            continue
        own_file = route.path.endswith("/files/{name}")
        response = call(world, route, client=anon, project=p, rows=p, headers=worker)
        want = "200" if own_file else "403"
        matrix.record(f"{route.method} {route.path}", "worker", response,
                      response.status_code == int(want), want)
    matrix.assert_clean(["worker"])
    # Pages never take a bearer token: the labeling page sends it to the login form.
    page = anon.get(f"/projects/{p.project.id}/label", headers=worker, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")

    run = f"/api/v1/training-runs/{p.training_run}"
    foreign = anon.post(f"{run}/claim", headers=_bearer(q.worker_secret),
                        json={"worker": "w", "attempt": 1})
    assert foreign.status_code in (403, 404), foreign.text
    not_worker = anon.post(f"{run}/claim", headers=_bearer(_token(
        world, p, [s for s in API_SCOPES if s != "worker"])), json={"worker": "w", "attempt": 1})
    assert not_worker.status_code == 403, not_worker.text
    assert anon.post(f"{run}/claim", headers=worker,
                     json={"worker": "w", "attempt": 1}).status_code == 200
    assert anon.post(f"{run}/report", headers=worker, json={"attempt": 1}).json() == {
        "cancel": False, "status": "running"}
    assert anon.post(f"{run}/finish", headers=worker,
                     json={"attempt": 1, "status": "failed", "error": "x"}).status_code == 200
    file_url = (f"/api/v1/projects/{p.project.id}/snapshots/{p.snapshot_old}/files/"
                f"{p.file_name}")
    assert anon.post(f"{run}/report", headers=worker, json={"attempt": 1}).status_code == 401
    assert anon.get(file_url, headers=worker).status_code == 401

    # Cancelling a queued run revokes its attempt's token before the worker ever claims.
    admin = world.clients["site_admin"]
    cancelled = admin.post(f"/api/v1/projects/{q.project.id}/training-runs/{q.training_run}"
                           "/cancel", headers={"X-CSRF-Token": world.csrf["site_admin"]})
    assert cancelled.status_code == 200, cancelled.text
    late = anon.post(f"/api/v1/training-runs/{q.training_run}/claim",
                     headers=_bearer(q.worker_secret), json={"worker": "w", "attempt": 1})
    assert late.status_code == 401


def test_api_tokens_are_limited_to_their_project_and_scope(client, backend) -> None:  # noqa: ANN001
    world = build_world(client)
    anon, p, q = world.clients["anonymous"], world.p, world.q
    _worker_token_does_only_a_workers_job(world, anon)

    everything = [s for s in API_SCOPES if s != "worker"]
    q_token = _bearer(_token(world, q, list(API_SCOPES)))
    matrix = Matrix()
    for route in sorted(TABLE, key=lambda r: r.phase):
        if not route.is_api or route.rule in (WORKER, USER):
            continue
        exact = _bearer(_token(world, p, [route.scope]))
        others = _bearer(_token(world, p, [s for s in API_SCOPES if s != route.scope]))
        row = f"{route.method} {route.path}"
        for column, headers, ok in (
                ("scope", exact, lambda s: s not in (401, 403, 404) and s < 500),
                ("other", others, lambda s: s == 403),
                ("Q", q_token, lambda s: s in (403, 404))):
            response = call(world, route, client=anon, project=p, rows=p, headers=headers)
            matrix.record(row, column, response, ok(response.status_code), column)
    matrix.assert_clean(["scope", "other", "Q"])

    # The project list shows a token its own project only.
    listed = anon.get("/api/v1/projects", headers=_bearer(_token(world, p, ["read"])))
    assert [x["id"] for x in listed.json()] == [p.project.id]
    # A token never does more than its owner may: a labeler's export token is refused.
    lee = _bearer(_token(world, p, ["export", "read"], user=world.users["labeler"]))
    assert anon.get(f"/api/v1/projects/{p.project.id}/export", headers=lee).status_code == 403
    assert anon.get(f"/api/v1/projects/{p.project.id}", headers=lee).status_code == 200
    # No page takes a token instead of a session.
    admin_token = _bearer(_token(world, p, everything))
    for route in TABLE:
        if route.is_api or route.rule == PUBLIC:
            continue
        page = call(world, route, client=anon, project=p, rows=p, headers=admin_token)
        assert page.status_code == 303, (route.key, page.status_code)
        assert page.headers["location"].startswith("/login"), route.key


def test_a_revoked_token_stops_working_on_the_next_call(client, backend, db) -> None:  # noqa: ANN001
    world = build_world(client)
    anon, p = world.clients["anonymous"], world.p
    admin, csrf = world.clients["project_admin"], world.csrf["project_admin"]
    issued = admin.post(f"/projects/{p.project.id}/tokens",
                        data={"name": "ci", "scopes": ["read", "export"], "csrf_token": csrf})
    assert issued.status_code == 200
    secret = re.search(r'id="new-token">(tdm_[\w-]+)<', issued.text).group(1)
    headers = _bearer(secret)
    export = f"/api/v1/projects/{p.project.id}/export"
    assert anon.get(export, headers=headers).status_code == 200
    token_id = db.query(ApiToken).filter_by(prefix=secret[:10]).one().id
    revoked = admin.post(f"/projects/{p.project.id}/tokens/{token_id}/revoke",
                         data={"csrf_token": csrf}, follow_redirects=False)
    assert revoked.status_code == 303
    assert anon.get(export, headers=headers).status_code == 401
    assert anon.get(f"/api/v1/projects/{p.project.id}", headers=headers).status_code == 401
    # Another project's admin cannot revoke P's tokens through their own project's path.
    other = write(create_api_token, user=p.admin, project_id=p.project.id, name="kept",
                  scopes=["read"])
    q_admin = TestClient(client.app, base_url="http://testserver")
    q_csrf = login(q_admin, world.q.admin.email)
    refused = q_admin.post(f"/projects/{world.q.project.id}/tokens/{other.token.id}/revoke",
                           data={"csrf_token": q_csrf})
    assert refused.status_code == 404
    assert anon.get(f"/api/v1/projects/{p.project.id}",
                    headers=_bearer(other.secret)).status_code == 200

