"""Every route of the app, with who may call it and with what: the expectation table.

A rule is a project Action (the roles in ``MAY`` get through, other members 403, non-members
404), or PUBLIC, USER (anyone logged in), SITE_ADMIN, WORKER (a training run's own token).
A body is chosen to pass the schema, so the route itself runs and checks the policy, and,
where it can, to fail after the check (a 400) so that allowed calls change little.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.projects.policies import Action
from tests.security.world import Rows, World

PUBLIC, USER, SITE_ADMIN, WORKER = "public", "user", "site_admin", "worker"

# Who may do each action: written out here, not read from the policy under test.
MAY: dict[str, set[str]] = {
    Action.VIEW: {"labeler", "reviewer", "project_admin", "site_admin"},
    Action.LABEL: {"labeler", "reviewer", "project_admin", "site_admin"},
    Action.SEE_PROGRESS: {"reviewer", "project_admin", "site_admin"},
    Action.REVIEW: {"reviewer", "project_admin", "site_admin"},
    Action.MANAGE: {"project_admin", "site_admin"},
    Action.IMPORT: {"project_admin", "site_admin"},
    Action.EXPORT: {"project_admin", "site_admin"},
}

GET_FIRST, UNSAFE, DESTRUCTIVE, LAST = 0, 1, 2, 3
BAD_FILE = {"files": {"file": ("bad.jsonl", b"this is not json\n", "application/x-ndjson")}}

Body = Callable[[World, Rows], dict[str, Any]]


def _const(**kwargs: Any) -> Body:  # noqa: ANN401
    return lambda world, rows: kwargs


@dataclass(frozen=True)
class R:
    method: str
    path: str
    rule: str
    scope: str | None = None  # the API token scope the route needs
    body: Body = field(default=_const())
    action: str = "cancel"  # fills an {action} path parameter
    phase: int = GET_FIRST

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")


def compare_query(world: World, rows: Rows) -> dict[str, Any]:
    return {"params": {"older": rows.snapshot_old, "newer": rows.snapshot_new}}


def gold_form(world: World, rows: Rows) -> dict[str, Any]:
    return {"data": {"external_id": rows.item_external_id, "answer": ""}}


def training_on_unbuilt_snapshot(world: World, rows: Rows) -> dict[str, Any]:
    return {"json": {"snapshot_id": rows.snapshot_queued}}  # not built yet: a 400


P = "/projects/{project_id}"
A = "/api/v1/projects/{project_id}"
V, L, S, RV, M, IM, E = (Action.VIEW, Action.LABEL, Action.SEE_PROGRESS, Action.REVIEW,
                        Action.MANAGE, Action.IMPORT, Action.EXPORT)

TABLE: list[R] = [
    # auth and the project list
    R("GET", "/", PUBLIC), R("GET", "/login", PUBLIC), R("GET", "/healthz", PUBLIC),
    R("GET", "/readyz", PUBLIC),
    R("POST", "/login", PUBLIC, body=_const(data={"email": "x@example.org", "password": "x"}),
      phase=UNSAFE),
    R("POST", "/logout", USER, phase=LAST),
    R("GET", "/projects", USER),
    R("GET", "/projects/new", SITE_ADMIN),
    R("POST", "/projects", SITE_ADMIN, phase=UNSAFE,
      body=_const(data={"name": "Made by the matrix", "task_type": "pairwise"})),
    # project pages
    R("GET", P, V), R("GET", P + "/progress", S), R("GET", P + "/settings", M),
    R("POST", P + "/settings", M, body=_const(data={"name": "Project P"}), phase=UNSAFE),
    R("POST", P + "/members", M, phase=UNSAFE,
      body=_const(data={"email": "invitee@example.org", "role": "labeler"})),
    R("POST", P + "/members/{member_user_id}/remove", M, phase=DESTRUCTIVE),
    R("POST", P + "/tokens", M, body=_const(data={"name": "t", "scopes": "read"}),
      phase=UNSAFE),
    R("POST", P + "/tokens/{token_id}/revoke", M, phase=DESTRUCTIVE),
    # import
    R("GET", P + "/import", IM),
    R("POST", P + "/import", IM, body=_const(**BAD_FILE), phase=UNSAFE),
    R("GET", P + "/import-jobs/{job_id}", IM),
    # labeling
    R("GET", P + "/label", L), R("POST", P + "/label/next", L, phase=UNSAFE),
    R("POST", P + "/label/submit", L, phase=UNSAFE),
    R("POST", P + "/label/skip", L, phase=UNSAFE),
    # review and adjudication
    R("GET", P + "/review", RV), R("POST", P + "/review", RV, phase=UNSAFE),
    R("GET", P + "/adjudicate", RV), R("POST", P + "/adjudicate", RV, phase=UNSAFE),
    R("GET", P + "/analytics", S),
    # the item list
    R("GET", P + "/items", S), R("GET", P + "/items-count", S),
    R("GET", P + "/items/{item_id}", S),
    R("GET", P + "/gold", M), R("POST", P + "/gold", M, body=gold_form, phase=UNSAFE),
    # export pages
    R("GET", P + "/export", E), R("GET", P + "/export.jsonl", E),
    R("POST", P + "/snapshots", E, body=_const(data={"test_fraction": "abc"}), phase=UNSAFE),
    R("GET", P + "/snapshots/{snapshot_id}", E),
    R("GET", P + "/snapshots/{snapshot_id}/files/{name}", E),
    R("GET", P + "/snapshots-compare", E, body=compare_query),
    # judge pages
    R("GET", P + "/judge", M), R("POST", P + "/judge/config", M, phase=UNSAFE),
    R("POST", P + "/judge/preview", M, phase=UNSAFE),
    R("GET", P + "/judge/previews/{preview_id}", M),
    R("POST", P + "/judge/runs", M, body=_const(data={"mode": "bogus"}), phase=UNSAFE),
    R("GET", P + "/judge/runs/{run_id}", M),
    R("POST", P + "/judge/runs/{run_id}/{action}", M, phase=UNSAFE),
    # training and generation pages
    R("GET", P + "/training", M),
    R("POST", P + "/training", M, body=_const(data={"snapshot_id": "abc"}), phase=UNSAFE),
    R("GET", P + "/training/{run_id}", M),
    R("POST", P + "/training/{run_id}/{action}", M, phase=UNSAFE),
    R("POST", P + "/generations", M, body=_const(data={"k": "abc"}), phase=UNSAFE),
    R("GET", P + "/generations/{run_id}", M),
    # the JSON API
    R("GET", "/api/v1/projects", USER),
    R("GET", A, V, "read"), R("GET", A + "/rounds", S, "read"),
    R("POST", A + "/items", IM, "import", body=_const(json={"items": [{"bad": 1}]}),
      phase=UNSAFE),
    R("POST", A + "/imports", IM, "import", body=_const(**BAD_FILE), phase=UNSAFE),
    R("GET", A + "/imports/{job_id}", IM, "import"),
    R("GET", A + "/items", S, "read"),
    R("GET", A + "/export", E, "export"),
    R("POST", A + "/snapshots", E, "export", body=_const(json={}), phase=UNSAFE),
    R("GET", A + "/snapshots", E, "export"),
    R("GET", A + "/snapshots/{snapshot_id}", E, "export"),
    R("GET", A + "/snapshots/{snapshot_id}/files/{name}", E, "export"),
    R("GET", A + "/snapshots/{newer_id}/compare/{older_id}", E, "export"),
    R("GET", A + "/judge", M, "judge"),
    R("PUT", A + "/judge", M, "judge", body=_const(json={"template": "x"}), phase=UNSAFE),
    R("POST", A + "/judge-runs", M, "judge", phase=UNSAFE,
      body=_const(json={"external_id_prefix": "no-such-item-"})),
    R("GET", A + "/judge-runs/{run_id}", M, "judge"),
    R("POST", A + "/judge-runs/{run_id}/cancel", M, "judge", phase=UNSAFE),
    R("POST", A + "/judge-runs/{run_id}/resume", M, "judge", phase=UNSAFE),
    R("POST", A + "/training-runs", M, "train", body=training_on_unbuilt_snapshot, phase=UNSAFE),
    R("GET", A + "/training-runs", M, "train"),
    R("GET", A + "/training-runs/{run_id}", M, "train"),
    R("POST", A + "/training-runs/{run_id}/cancel", M, "train", phase=UNSAFE),
    R("POST", A + "/training-runs/{run_id}/restart", M, "train", phase=UNSAFE),
    R("GET", A + "/checkpoints", M, "train"),
    R("POST", A + "/generation-runs", M, "train", body=_const(json={"provider": "openai"}),
      phase=UNSAFE),
    R("GET", A + "/generation-runs/{run_id}", M, "train"),
    # what a training worker calls, with its run's token
    R("POST", "/api/v1/training-runs/{run_id}/claim", WORKER, "worker", phase=UNSAFE,
      body=_const(json={"worker": "w", "attempt": 1})),
    R("POST", "/api/v1/training-runs/{run_id}/report", WORKER, "worker", phase=UNSAFE,
      body=_const(json={"attempt": 1})),
    R("POST", "/api/v1/training-runs/{run_id}/finish", WORKER, "worker", phase=UNSAFE,
      body=_const(json={"attempt": 1, "status": "failed", "error": "matrix"})),
]

# Routes of the framework, not of Tandem.
IGNORED = {"/api/v1/openapi.json", "/api/docs", "/docs/oauth2-redirect",
           "/api/docs/oauth2-redirect"}


def _flatten(routes):  # noqa: ANN001, ANN202
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # FastAPI 0.16x keeps included routers as a unit
            yield from contexts()
        else:
            yield route


def app_routes(app) -> set[tuple[str, str]]:  # noqa: ANN001
    """(method, path template) of every route the app serves, /static and docs aside."""
    from starlette.routing import Mount

    found = set()
    for route in _flatten(app.routes):
        if isinstance(route, Mount) or route.path in IGNORED:
            continue
        found |= {(m, route.path) for m in (route.methods or set()) - {"HEAD"}}
    return found


def first_item(rows: Rows) -> int:
    """The first item of ``rows``' project."""
    from sqlalchemy import func, select

    from app.models import Item
    from tests.support import write

    return write(lambda db: db.scalar(select(func.min(Item.id))
                                      .where(Item.project_id == rows.project.id)))


def fill(route: R, world: World, *, project: Rows, rows: Rows) -> str:
    """The route's path with ``project``'s id and ``rows``' sub-rows (for the IDOR sweep,
    another project's)."""
    run = (rows.judge_run if "judge" in route.path
           else rows.generation if "generation" in route.path else rows.training_run)
    lazy: dict[str, Callable[[], Any]] = {
        "project_id": lambda: project.project.id, "job_id": lambda: rows.import_job,
        "snapshot_id": lambda: rows.snapshot_old, "name": lambda: rows.file_name,
        "newer_id": lambda: rows.snapshot_new, "older_id": lambda: rows.snapshot_old,
        "preview_id": lambda: rows.preview, "run_id": lambda: run,
        "action": lambda: route.action,
        "member_user_id": lambda: world.new_member(rows),
        "token_id": lambda: world.new_token(rows),
        "item_id": lambda: first_item(rows),
    }
    path = route.path
    for name, value in lazy.items():
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", str(value()))
    assert "{" not in path, f"no value for a parameter of {route.path}"
    return path
