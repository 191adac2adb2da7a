"""The training worker's HTTP client: everything it needs from the server goes through the
API with the run's token, so it can run on a machine without database access."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx


class RunGone(Exception):
    """The server will not take reports for this attempt any more (cancelled, failed by the
    watchdog, token revoked)."""


class ApiClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0,
                 retries: int = 5) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})
        self.retries = retries

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries on connection errors and 5xx; 401/409 mean the attempt is over."""
        for n in range(self.retries + 1):
            try:
                response = self.http.post(path, json=body)
            except httpx.TransportError:
                if n == self.retries:
                    raise
                time.sleep(min(30.0, 2.0 ** n))
                continue
            if response.status_code in (401, 403, 404, 409):
                raise RunGone(f"{response.status_code}: {response.text[:500]}")
            if response.status_code >= 500 and n < self.retries:
                time.sleep(min(30.0, 2.0 ** n))
                continue
            response.raise_for_status()
            return response.json()
        raise RuntimeError("unreachable")

    def claim(self, run_id: int, *, attempt: int, worker: str) -> dict[str, Any]:
        return self._post(f"/api/v1/training-runs/{run_id}/claim",
                          {"attempt": attempt, "worker": worker})

    def report(self, run_id: int, *, attempt: int, points: list[dict[str, Any]],
               log: list[str]) -> dict[str, Any]:
        return self._post(f"/api/v1/training-runs/{run_id}/report",
                          {"attempt": attempt, "points": points, "log": log})

    def finish(self, run_id: int, *, attempt: int, status: str, error: str | None = None,
               checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._post(f"/api/v1/training-runs/{run_id}/finish",
                          {"attempt": attempt, "status": status, "error": error,
                           "checkpoint": checkpoint})

    def download(self, url: str, dest: Path, *, sha256: str) -> Path:
        """Stream a snapshot file to ``dest`` and check it against the manifest's sha256."""
        digest = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        with self.http.stream("GET", url) as response:
            if response.status_code != 200:
                raise RunGone(f"download {url}: {response.status_code}")
            with tmp.open("wb") as f:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
        if digest.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"{dest.name}: sha256 {digest.hexdigest()} does not match the "
                             f"snapshot's manifest ({sha256}); the file changed or was cut")
        tmp.replace(dest)
        return dest
