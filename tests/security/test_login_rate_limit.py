"""Failed logins are limited per account and per client address, in the database: the limit
holds across server processes, a refusal says when to come back, and it ends with the window."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support import csrf_from, make_user, reset_caches, start_server, stop_process

PASSWORD = "correct-horse-1"
WRONG = "wrong-guess-Zq81x"


def attempt(client, email: str, password: str, headers: dict | None = None):  # noqa: ANN001, ANN201
    """One try through the real login form (a TestClient or an httpx.Client)."""
    client.cookies.clear()
    page = client.get("/login", headers=headers)
    return client.post("/login", headers=headers, follow_redirects=False,
                       data={"email": email, "password": password,
                             "csrf_token": csrf_from(page.text), "next_url": "/projects"})


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch, app_env) -> dict[str, str]:  # noqa: ANN001
    env = {"TANDEM_LOGIN_MAX_FAILURES": "5", "TANDEM_LOGIN_MAX_FAILURES_PER_IP": "12",
           "TANDEM_LOGIN_WINDOW_S": "3"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    return env


def test_after_five_wrong_passwords_even_the_right_one_waits(limits, client) -> None:  # noqa: ANN001
    make_user("ann@example.org")
    make_user("bob@example.org")
    for _ in range(5):
        assert attempt(client, "ann@example.org", WRONG).status_code == 401
    refused = attempt(client, "  Ann@Example.org ", PASSWORD)  # the same account, normalised
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert "Too many failed logins" in refused.text and "before you try again" in refused.text
    assert "tandem_session" not in refused.cookies
    # The address is not blocked for everyone: another account logs in from it.
    assert attempt(client, "bob@example.org", PASSWORD).status_code == 303
    # When the window has passed, the right password works again, and clears the count.
    time.sleep(int(refused.headers["retry-after"]) + 0.2)
    assert attempt(client, "ann@example.org", PASSWORD).status_code == 303
    for _ in range(4):
        assert attempt(client, "ann@example.org", WRONG).status_code == 401
    assert attempt(client, "ann@example.org", PASSWORD).status_code == 303


def test_one_address_guessing_many_accounts_is_stopped(limits, client, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TANDEM_LOGIN_WINDOW_S", "300")
    reset_caches()
    make_user("ann@example.org")
    for i in range(12):
        assert attempt(client, f"nobody{i}@example.org", WRONG).status_code == 401
    refused = attempt(client, "ann@example.org", PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_limit_holds_across_two_server_processes(limits, app_env, tmp_path) -> None:  # noqa: ANN001
    make_user("ann@example.org")
    env = {**app_env.env, **limits, "TANDEM_LOGIN_WINDOW_S": "60"}
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(start_server(env, tmp_path / f"server-{name}.log"))
        clients = [httpx.Client(base_url=base, timeout=30) for _, base in servers]
        for i in range(5):
            assert attempt(clients[i % 2], "ann@example.org", WRONG).status_code == 401
        for c in clients:  # each process sees the failures the other one counted
            refused = attempt(c, "ann@example.org", PASSWORD)
            assert refused.status_code == 429, refused.text
            assert 50 <= int(refused.headers["retry-after"]) <= 60
        for c in clients:
            c.close()
    finally:
        for proc, _ in servers:
            stop_process(proc)
    logs = "".join((tmp_path / f"server-{n}.log").read_text() for n in ("a", "b"))
    assert logs.count("failed login for ann@example.org from 127.0.0.1") == 5
    assert WRONG not in logs and PASSWORD not in logs


@pytest.mark.parametrize("backend", ["sqlite"])
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(limits, app_env, tmp_path) -> None:  # noqa: ANN001
    make_user("ann@example.org")
    env = {**app_env.env, **limits, "TANDEM_LOGIN_MAX_FAILURES_PER_IP": "3",
           "TANDEM_LOGIN_WINDOW_S": "60"}
    for trusted, name in (("127.0.0.1", "proxied"), ("", "direct")):
        proc, base = start_server(dict(env, TANDEM_TRUSTED_PROXIES=trusted),
                                  tmp_path / f"{name}.log")
        try:
            with httpx.Client(base_url=base, timeout=30) as c:
                for i in range(3):
                    forged = {"X-Forwarded-For": f"10.9.{len(name)}.{i}"}
                    assert attempt(c, f"guess{i}-{name}@example.org", WRONG,
                                   forged).status_code == 401
                # Behind a trusted proxy each forwarded address is its own client; straight
                # from the internet, rotating the header does not escape the limit.
                fresh = {"X-Forwarded-For": f"10.9.{len(name)}.99"}
                expected = 303 if name == "proxied" else 429
                assert attempt(c, "ann@example.org", PASSWORD, fresh).status_code == expected
        finally:
            stop_process(proc)
