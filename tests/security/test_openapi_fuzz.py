"""Schemathesis over the OpenAPI schema, against a real server: every API operation, called
with generated parameters and bodies by a project admin's token with every scope, answers
without a 5xx. Path ids named project_id are the real project's, so the calls get past
authorisation and into the code that reads the input."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import (
    AppEnv,
    make_project,
    make_user,
    sample_items,
    start_server,
    stop_process,
    write,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
EXAMPLES = 25


@pytest.fixture
def api_server(app_env: AppEnv, tmp_path: Path):  # noqa: ANN201
    log = tmp_path / "server.log"
    server, base = start_server(app_env.env, log)
    try:
        yield base, log
    finally:
        stop_process(server)


def _token(project_id: int, user) -> str:  # noqa: ANN001
    from app.auth.service import API_SCOPES, create_api_token

    scopes = [s for s in API_SCOPES if s != "worker"]  # a worker token is a run's, not a person's
    return write(create_api_token, user=user, project_id=project_id, name="fuzz",
                 scopes=scopes).secret


def test_no_api_operation_answers_with_a_server_error(api_server) -> None:  # noqa: ANN001
    import schemathesis

    base, log = api_server
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, task_type="ranking", k=1, items=sample_items(6, responses=3),
                           rules=[("honest", "No false claims")])
    headers = {"Authorization": f"Bearer {_token(project.id, admin)}"}
    raw = httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    failures: list[str] = []
    calls = {"n": 0}

    def fuzz(operation) -> None:  # noqa: ANN001
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def call(data: st.DataObject) -> None:
            case = data.draw(operation.as_strategy())
            if case.path_parameters and "project_id" in case.path_parameters:
                case.path_parameters["project_id"] = project.id
            response = case.call(base_url=base, headers=headers, timeout=30)
            calls["n"] += 1
            if response.status_code >= 500:
                failures.append(f"{operation.label}: {case.formatted_path} -> "
                                f"{response.status_code}: {case.as_curl_command()[:600]}")

        call()

    for operation in operations:
        fuzz(operation)

    tail = log.read_text(errors="replace")[-4000:] if failures else ""
    assert not failures, "\n".join(sorted(set(failures))[:20]) + "\n--- server log ---\n" + tail
    assert calls["n"] >= len(operations) * 5, calls
    assert os.path.exists(log)
