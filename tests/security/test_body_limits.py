"""Oversized request bodies are refused before they are read whole, against a real server:
by their Content-Length before a byte is sent, or as a chunked stream as soon as it passes
the limit, without the server's memory growing with it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.auth.service import create_api_token
from tests.support import (
    csrf_from,
    make_project,
    make_user,
    sample_items,
    start_server,
    stop_process,
    write,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

MB = 1024 * 1024
UPLOAD_LIMIT = 4 * MB


class Server:
    def __init__(self, proc, base: str, project_id: int, token: str) -> None:  # noqa: ANN001
        self.proc, self.base, self.project_id = proc, base, project_id
        self.port = int(base.rsplit(":", 1)[1])
        self.bearer = {"Authorization": f"Bearer {token}"}

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines()
                        if line.startswith("VmRSS:")).split()[1])


@pytest.fixture
def server(app_env, tmp_path) -> Iterator[Server]:  # noqa: ANN001
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, items=sample_items(1))
    token = write(create_api_token, user=admin, project_id=project.id, name="ci",
                  scopes=["import", "export", "read"]).secret
    env = dict(app_env.env, TANDEM_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
               TANDEM_MAX_BODY_BYTES=str(MB))
    proc, base = start_server(env, tmp_path / "server.log")
    try:
        yield Server(proc, base, project.id, token)
    finally:
        stop_process(proc)


def login(c: httpx.Client) -> str:
    page = c.get("/login")
    c.post("/login", data={"email": "admin@example.org", "password": "correct-horse-1",
                           "csrf_token": csrf_from(page.text)})
    return csrf_from(c.get("/projects").text)


def jsonl(n: int, start: int = 100) -> bytes:
    return "\n".join(json.dumps(i) for i in sample_items(n, start=start)).encode()


def test_a_json_body_over_the_limit_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as c:
        big = {"format": "standard", "note": "x" * (2 * MB)}
        api = c.post(f"/api/v1/projects/{server.project_id}/snapshots", json=big,
                     headers=server.bearer)
        assert api.status_code == 413
        assert api.json() == {"detail": "The request is too large: the limit here is 1 MB."}
        csrf = login(c)
        page = c.post(f"/projects/{server.project_id}/members",
                      data={"csrf_token": csrf, "email": "x" * (2 * MB), "role": "labeler"})
        assert page.status_code == 413 and "text/html" in page.headers["content-type"]
        assert "the limit here is 1 MB" in page.text
        assert page.headers["x-content-type-options"] == "nosniff"


def test_a_declared_1_gb_upload_is_refused_before_its_body_is_sent(server: Server) -> None:
    head = (f"POST /api/v1/projects/{server.project_id}/imports HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: {server.bearer['Authorization']}\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n"
            f"Content-Length: {1024 * MB}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)  # and not one byte of the body
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5


def test_a_1_gb_chunked_upload_is_cut_off_without_filling_memory(server: Server) -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        chunk = b'{"items": [' + b" " * (MB - 11)
        while sent < 1024 * MB:  # a 1 GB JSON document, never finished
            sent += len(chunk)
            yield chunk
            chunk = b" " * MB

    with httpx.Client(base_url=server.base, timeout=60) as c:
        # warm up: the route's code is loaded before the baseline is taken
        assert c.post(f"/api/v1/projects/{server.project_id}/items", headers=server.bearer,
                      json={"items": sample_items(1, start=50)}).status_code == 200
        baseline = server.rss_kb()
        peak = baseline
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server.rss_kb())
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            response = c.post(f"/api/v1/projects/{server.project_id}/items", content=body(),
                              headers={**server.bearer, "Content-Type": "application/json"})
        finally:
            done.set()
            watcher.join()
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert "4 MB" in response.json()["detail"]
    assert sent < 1024 * MB  # the server stopped the upload, it did not drain it
    print(f"sent {sent // MB} MB before the 413; RSS grew by {(peak - baseline) / 1024:.1f} MB")
    assert (peak - baseline) / 1024 < 50, f"RSS grew by {(peak - baseline) / 1024:.0f} MB"
    assert server.proc.poll() is None


def test_a_normal_import_still_works_on_the_page_and_the_api(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=60) as c:
        # 2 MB: over the general limit, within the import limit
        padded = "\n".join(
            json.dumps(dict(i, metadata={"pad": "p" * 20_000}))
            for i in sample_items(100, start=200)).encode()
        assert MB < len(padded) < UPLOAD_LIMIT
        api = c.post(f"/api/v1/projects/{server.project_id}/imports", headers=server.bearer,
                     files={"file": ("items.jsonl", padded, "application/jsonl")})
        assert api.status_code == 200, api.text
        assert api.json()["created"] == 100
        csrf = login(c)
        page = c.post(f"/projects/{server.project_id}/import",
                      data={"csrf_token": csrf},
                      files={"file": ("small.jsonl", jsonl(3), "application/jsonl")})
        assert page.status_code == 200, page.text
        over = c.post(f"/projects/{server.project_id}/import", data={"csrf_token": csrf},
                      files={"file": ("big.jsonl", b"x" * (UPLOAD_LIMIT + 1), "text/plain")})
        assert over.status_code == 413 and "the limit here is 4 MB" in over.text
        listed = c.get(f"/api/v1/projects/{server.project_id}", headers=server.bearer).json()
    assert listed["progress"]["total"] == 1 + 100 + 3
