"""A labeler driving the real pages over HTTP, for fault tests: take an item, submit it,
and press again while the server answers 503."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import httpx

ITEM_RE = re.compile(r'name="item_id" value="(\d+)"')
KEY_RE = re.compile(r'name="idempotency_key" value="([0-9a-f]+)"')
HX = {"HX-Request": "true"}
UNAVAILABLE = "The database is unavailable right now; try again in a moment."


@dataclass
class Labeler:
    """One browser's worth of labeling: take an item, submit, and retry what failed."""

    client: httpx.Client
    csrf: str
    project_id: int
    stop: threading.Event
    acked: list[tuple[int, str]] = field(default_factory=list)
    answers: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds)
    problems: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    uncertain: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        """POST until it gets a 200, as a labeler pressing again would; 503 is the only
        other answer we accept, and each must come back quickly."""
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            start = time.monotonic()
            try:
                response = self.client.post(path, data={"csrf_token": self.csrf, **data},
                                            headers=HX, timeout=30)
            except httpx.HTTPError as exc:
                # The server went away: this request may or may not have been handled.
                self.uncertain.append((path, dict(data)))
                self.transport_errors.append(f"{path}: {type(exc).__name__}: {exc}")
                return httpx.Response(599)
            self.answers.append((response.status_code, time.monotonic() - start))
            if response.status_code == 200:
                return response
            if response.status_code != 503 or UNAVAILABLE not in response.text:
                self.problems.append(f"{path}: {response.status_code} {response.text[:300]}")
                return response
            time.sleep(0.3)
        self.problems.append(f"{path}: still 503 after two minutes")
        return httpx.Response(599)

    def run(self) -> None:
        base = f"/projects/{self.project_id}/label"
        page = self.post(f"{base}/next", {}).text
        while not self.stop.is_set() and not self.problems:
            item, key = ITEM_RE.search(page), KEY_RE.search(page)
            if item is None:
                return  # the queue is empty
            response = self.post(f"{base}/submit", {"item_id": item.group(1),
                                                    "idempotency_key": key.group(1),
                                                    "scale": "2", "time_spent_ms": "900"})
            if response.status_code != 200:
                return
            if "Saved." in response.text:
                self.acked.append((int(item.group(1)), key.group(1)))
            page = response.text
