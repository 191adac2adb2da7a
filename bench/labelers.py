"""Simulated labelers over real HTTP, shared by ``bench.run`` and ``bench.load``.

Each labeler is a thread: it logs in through the form with an httpx client, then loops
``label/next`` / ``label/submit`` as the htmx page does, and may log out halfway (a labeler
who leaves). Every request is timed per endpoint, its status counted, and its body checked
for a SQLite lock error that reached the user. Given several server URLs, a labeler sends each
request to the next one (``Spread``), as a proxy without sticky sessions would.

The loop's requests go over ``KeepAlive`` (the standard library's http.client on one kept-alive
connection per server) rather than httpx: the load generator shares the machine's cores with
the server it measures, and httpx spent about 0.9 ms of CPU per label, a tenth of the server's.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx

PASSWORD = "correct-horse-1"
ITEM_RE = re.compile(r'name="item_id" value="(\d+)"')
KEY_RE = re.compile(r'name="idempotency_key" value="([^"]+)"')
NOTICE_RE = re.compile(r'id="label-notice">([^<]*)<')
HX = {"HX-Request": "true"}
LOCKED = "database is locked"
SLOW_S = 1.0


class Budget:
    """How many submits may still be made; a submit that is not acknowledged gives its slot back."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.left += 1

    def stop(self) -> None:
        """No more submits: every labeler finishes after its current request."""
        with self.lock:
            self.left = -(10**9)


def task_of(html: str) -> tuple[str, str] | None:
    """The (item id, idempotency key) of the task panel, or None when the queue is empty."""
    m_item, m_key = ITEM_RE.search(html), KEY_RE.search(html)
    if not m_item or not m_key:
        return None
    return m_item.group(1), m_key.group(1)


class Spread:
    """An httpx request hook that sends each request to the next of several web processes of
    one host (cookies are per host, not per port): the session made on one server is used on
    the others, as behind a proxy without sticky sessions."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.turn = 0
        self.sent: Counter[str] = Counter()  # server URL -> requests sent to it
        self.last: str | None = None  # where the latest request went
        self.login_at: str | None = None  # the server that accepted the login form

    def pick(self, method: str, path: str) -> str:
        """The server the next request goes to."""
        self.last = self.urls[self.turn % len(self.urls)]
        self.turn += 1
        self.sent[self.last] += 1
        if method == "POST" and path == "/login":
            self.login_at = self.last
        return self.last

    def __call__(self, request: httpx.Request) -> None:
        target = httpx.URL(self.pick(request.method, request.url.path))
        request.url = request.url.copy_with(scheme=target.scheme, host=target.host,
                                            port=target.port)
        request.headers["Host"] = target.netloc.decode()

    def avoid(self, url: str | None) -> None:
        """Send the next request to a server other than ``url``."""
        if url is not None and self.urls[self.turn % len(self.urls)] == url:
            self.turn += 1


@dataclass(frozen=True)
class Reply:
    status_code: int
    text: str


class KeepAlive:
    """Form posts over one kept-alive http.client connection per server, carrying the cookies
    of an httpx client that logged in. Nothing is followed or retried but a request on a
    connection the server had closed while idle, sent again on a new one, as httpx does."""

    def __init__(self, urls: Sequence[str], cookies: httpx.Cookies,
                 spread: Spread | None) -> None:
        self.urls, self.spread = list(urls), spread
        self.cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        self.conns: dict[str, http.client.HTTPConnection] = {}

    def _connection(self, url: str, fresh: bool = False) -> http.client.HTTPConnection:
        conn = self.conns.get(url)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            parts = urlsplit(url)
            conn = self.conns[url] = http.client.HTTPConnection(parts.hostname, parts.port,
                                                                timeout=60)
        return conn

    def post(self, path: str, data: dict[str, str],
             headers: dict[str, str] | None = None) -> Reply:
        url = self.spread.pick("POST", path) if self.spread else self.urls[0]
        body = urlencode(data).encode()
        head = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie,
                **(headers or {})}
        reused = url in self.conns
        conn = self._connection(url)
        try:
            conn.request("POST", path, body, head)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            conn = self._connection(url, fresh=True)
            conn.request("POST", path, body, head)
            response = conn.getresponse()
        return Reply(response.status, response.read().decode())

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def failed(exc: Exception, gate: threading.Barrier) -> str:
    """What a simulated labeler reports when it dies; the others waiting at the start gate
    are let go rather than left waiting for it."""
    try:
        gate.abort()
    except threading.BrokenBarrierError:
        pass
    return f"{type(exc).__name__}: {exc}"


class Labeler(threading.Thread):
    """One labeler. ``leave_after``: log out after that many acknowledged labels. ``url`` is
    one server, or several that the labeler's requests take in turn (see Spread)."""

    def __init__(self, url: str | Sequence[str], project_id: int, email: str, budget: Budget,
                 start_gate: threading.Barrier, seed: int, think_s: float = 0.0,
                 leave_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.think_s = think_s
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url, self.project_id, self.email = self.urls[0], project_id, email
        self.spread = Spread(self.urls) if len(self.urls) > 1 else None
        self.budget, self.gate = budget, start_gate
        self.leave_after = leave_after
        self.rng = random.Random(seed)
        # endpoint -> (perf_counter at the start, seconds) of each call: the start tells
        # which calls a disk stall met
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.statuses: Counter[str] = Counter()  # "endpoint status" -> count
        self.errors: Counter[str] = Counter()  # non-200 on next/submit
        self.locked = 0  # responses that told the user the database was locked
        self.slow: list[tuple[str, float, float]] = []  # (endpoint, wall-clock start, seconds)
        self.acked = 0
        self.acked_items: list[int] = []
        self.not_saved: Counter[str] = Counter()
        self.ties = 0
        self.exception: str | None = None
        self.queue_empty = False
        self.left = False  # logged out halfway
        self.held_when_leaving: int | None = None  # the item leased when it logged out
        self.logout_at: str | None = None  # the server that took the logout (several URLs)

    def times(self, endpoint: str) -> list[float]:
        """The seconds each call to ``endpoint`` took."""
        return [took for _, took in self.spans[endpoint]]

    @property
    def next_s(self) -> list[float]:
        return self.times("next")

    @property
    def submit_s(self) -> list[float]:
        return self.times("submit")

    def _post(self, client: KeepAlive, endpoint: str, path: str, **kw) -> Reply:  # noqa: ANN003
        started, t0 = time.time(), time.perf_counter()
        r = client.post(path, **kw)
        took = time.perf_counter() - t0
        self.spans[endpoint].append((t0, took))
        if took > SLOW_S:  # kept with its time, to find in the server and database logs
            self.slow.append((endpoint, started, took))
        self.statuses[f"{endpoint} {r.status_code}"] += 1
        if LOCKED in r.text:
            self.locked += 1
        return r

    def run(self) -> None:
        from tests.support import login

        try:
            hooks = {"request": [self.spread]} if self.spread else {}
            with httpx.Client(base_url=self.url, timeout=60, event_hooks=hooks) as client:
                t0 = time.perf_counter()
                csrf = login(client, self.email, PASSWORD)
                self.spans["login"].append((t0, time.perf_counter() - t0))
                fast = KeepAlive(self.urls, client.cookies, self.spread)
                try:
                    self.gate.wait()
                    self._loop(fast, csrf)
                finally:
                    fast.close()
        except Exception as exc:  # noqa: BLE001 (reported in the results)
            self.exception = failed(exc, self.gate)

    def _loop(self, client: KeepAlive, csrf: str) -> None:
        base = f"/projects/{self.project_id}/label"
        item: tuple[str, str] | None = None
        consecutive_errors = 0
        while consecutive_errors < 20:
            if item is None:
                r = self._post(client, "next", f"{base}/next", data={"csrf_token": csrf},
                               headers=HX)
                if r.status_code != 200:
                    self.errors[f"next {r.status_code}"] += 1
                    consecutive_errors += 1
                    continue
                item = task_of(r.text)
                if item is None:
                    self.queue_empty = True
                    return
            if self.leave_after is not None and self.acked >= self.leave_after:
                self._leave(client, csrf, int(item[0]))
                return
            if not self.budget.take():
                return
            if self.think_s:
                # A labeler reads the item before answering; 0 means back-to-back requests.
                time.sleep(self.rng.uniform(0.5, 1.5) * self.think_s)
            scale = self.rng.choice("11222334455")
            r = self._post(client, "submit", f"{base}/submit", headers=HX, data={
                "csrf_token": csrf, "item_id": item[0], "idempotency_key": item[1],
                "scale": scale, "time_spent_ms": str(self.rng.randint(2000, 60000)),
                "rationale": "",
            })
            if r.status_code != 200:
                self.errors[f"submit {r.status_code}"] += 1
                self.budget.give_back()
                consecutive_errors += 1
                item = None
                continue
            consecutive_errors = 0
            notice = (m.group(1).strip() if (m := NOTICE_RE.search(r.text)) else "")
            if notice == "Saved.":
                self.acked += 1
                self.acked_items.append(int(item[0]))
                self.ties += scale == "3"
            else:
                self.not_saved[notice or "(no notice)"] += 1
                self.budget.give_back()
            item = task_of(r.text)
            if item is None and "queue-empty" in r.text:
                self.queue_empty = True
                return

    def _leave(self, client: KeepAlive, csrf: str, holding: int) -> None:
        """Log out through the page's form while holding a lease, as a labeler who is done
        (across several servers: on another one than took the login)."""
        if self.spread:
            self.spread.avoid(self.spread.login_at)
        r = self._post(client, "logout", "/logout", data={"csrf_token": csrf})
        self.logout_at = self.spread.last if self.spread else self.url
        if r.status_code != 303:
            self.errors[f"logout {r.status_code}"] += 1
        self.left, self.held_when_leaving = True, holding


class Skipper(threading.Thread):
    """A labeler who takes ``calls`` items one after another without labeling any: the first
    call is ``label/next``, each later one ``label/skip`` of the current item, which hands out
    the next (a new lease each time). Times the item hand-out as the labeler waits for it."""

    def __init__(self, url: str, project_id: int, email: str, calls: int,
                 start_gate: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.url, self.project_id, self.email = url, project_id, email
        self.calls, self.gate = calls, start_gate
        self.spans: list[tuple[float, float]] = []  # (perf_counter at the start, seconds)
        self.errors: Counter[str] = Counter()
        self.items: list[int] = []
        self.exception: str | None = None

    @property
    def times(self) -> list[float]:
        """The seconds each hand-out took."""
        return [took for _, took in self.spans]

    def run(self) -> None:
        from tests.support import login

        try:
            with httpx.Client(base_url=self.url, timeout=60) as login_client:
                csrf = login(login_client, self.email, PASSWORD)
                cookies = login_client.cookies
            client = KeepAlive([self.url], cookies, None)
            with closing(client):
                self.gate.wait()
                base = f"/projects/{self.project_id}/label"
                item: tuple[str, str] | None = None
                for _ in range(self.calls):
                    data = {"csrf_token": csrf}
                    path = f"{base}/next"
                    if item is not None:
                        data["item_id"], path = item[0], f"{base}/skip"
                    t0 = time.perf_counter()
                    r = client.post(path, data=data, headers=HX)
                    self.spans.append((t0, time.perf_counter() - t0))
                    if r.status_code != 200:
                        self.errors[f"{path.rsplit('/', 1)[1]} {r.status_code}"] += 1
                        item = None
                        continue
                    item = task_of(r.text)
                    if item is None:
                        return
                    self.items.append(int(item[0]))
        except Exception as exc:  # noqa: BLE001 (reported in the results)
            self.exception = failed(exc, self.gate)
