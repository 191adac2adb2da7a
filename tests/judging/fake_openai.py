"""A small HTTP server speaking the OpenAI chat-completions wire format, for fault tests.

It stands in for an endpoint we cannot reach here (OpenAI, vLLM, ...). Each request takes the
next scripted behaviour: an answer with or without logprobs, a JSON answer, an HTTP error
with headers, malformed JSON, an empty answer, or a delay past the client's timeout.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: str, *, logprobs: dict[str, float] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}
    if logprobs is not None:
        top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in logprobs.items()]
        choice["logprobs"] = {"content": [{"token": content, "logprob": top[0]["logprob"],
                                           "bytes": None, "top_logprobs": top}]}
    else:
        choice["logprobs"] = None
    return {"id": "cmpl-1", "object": "chat.completion", "created": int(time.time()),
            "model": "fake", "choices": [choice],
            "usage": {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}}


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: deque[tuple] = deque()
        self.default: tuple = ("json", completion("A", logprobs={"A": 0.7, "B": 0.3}))
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        # Optional: decide the behaviour from the request body (else script, then default).
        self.responder: Any = None
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    outer.times.append(time.monotonic())
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if outer.delay:
                        time.sleep(outer.delay)
                    self._answer(body)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                chosen = outer.responder(body) if outer.responder else None
                if chosen is None:
                    chosen = outer.script.popleft() if outer.script else outer.default
                kind, payload, *rest = chosen
                extra = rest[0] if rest else {}
                if kind == "sleep":
                    time.sleep(payload)
                    kind, payload, extra = "json", completion("A"), {}
                if kind == "json":
                    self._send(200, json.dumps(payload).encode(), extra)
                elif kind == "status":
                    message = extra.pop("message", f"error {payload}")
                    self._send(payload, json.dumps({"error": {"message": message,
                                                              "type": "x"}}).encode(), extra)
                elif kind == "raw":
                    self._send(200, payload, extra)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
