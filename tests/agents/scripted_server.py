"""A local HTTP server that plays a scripted conversation, for the real SDKs to talk to.

It answers one route (``POST``) with a *script*: a list of steps, one per request. A step is a
canned answer, an :class:`Error` (status, error type, optional ``retry-after``), or a function of
the request body that returns either. Every request is recorded (path, headers, JSON body) so tests
can assert what the backend sent. Subclasses (``fake_anthropic``, ``fake_openai``) give the route,
the answer's and the error's JSON shapes and where the API key travels.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Error:
    """An error response: status, the API's error type (and code), message, headers."""

    status: int = 529
    type: str = "overloaded_error"
    message: str = "Overloaded"
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None


Step = dict[str, Any] | Error | Callable[[dict[str, Any]], "dict[str, Any] | Error"]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedServer:
    """The server. ``base_url`` is ``http://127.0.0.1:PORT``; ``requests`` lists what it got.
    ``require_key``: a request without a key is a 401; ``key``: so is one with another key."""

    route = "/"

    def __init__(self, steps: list[Step], *, require_key: bool = True, key: str | None = None):
        self.steps = list(steps)
        self.require_key = require_key or key is not None
        self.key = key  # when set, the one key accepted
        self.requests: list[Recorded] = []
        self.errors: list[BaseException] = []  # exceptions raised by script steps
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # headers and body leave in one write (no delayed-ACK stalls)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, fake.error_body(Error(400, "invalid_request_error", "body is not JSON")))
                    return
                status, payload, headers = fake._answer(self.path, dict(self.headers.items()), body)
                self._send(status, payload, headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_fake_{next(fake._ids)}")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    # ---- what a subclass says about its API ---------------------------------------------------

    def key_of(self, request: Recorded) -> str:
        auth = request.headers.get("authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""

    def error_body(self, error: Error) -> dict[str, Any]:
        raise NotImplementedError

    def answer_body(self, step: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def next_id(self) -> int:
        return next(self._ids)

    # ---- the server -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    @property
    def remaining(self) -> int:
        return len(self.steps)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def raise_errors(self) -> None:
        """Re-raise the first exception a script step raised (e.g. a failed assertion)."""
        if self.errors:
            raise self.errors[0]

    def _answer(self, path: str, headers: dict[str, str], body: dict[str, Any]
                ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(Recorded(path, {k.lower(): v for k, v in headers.items()}, body))
            if path.split("?")[0] != self.route:
                return 404, self.error_body(Error(404, "not_found_error", f"no route {path}")), {}
            sent = self.key_of(self.requests[-1])
            if self.require_key and not sent:
                return 401, self.error_body(Error(401, "authentication_error", "an API key is required")), {}
            if self.key is not None and sent != self.key:
                return 401, self.error_body(Error(401, "invalid_request_error", "Incorrect API key provided",
                                                  code="invalid_api_key")), {}
            if not self.steps:
                return 400, self.error_body(Error(400, "invalid_request_error",
                                                  "fake server: the script is exhausted")), {}
            step = self.steps.pop(0)
            if callable(step) and not isinstance(step, Error):
                try:
                    step = step(body)
                except Exception as e:  # a failed assertion in a script step: keep it for the test
                    self.errors.append(e)
                    return 400, self.error_body(Error(400, "invalid_request_error",
                                                      f"fake server: script step raised {e!r}")), {}
            if isinstance(step, Error):
                headers_out = dict(step.headers)
                if step.retry_after is not None:
                    headers_out["retry-after"] = step.retry_after
                return step.status, self.error_body(step), headers_out
            return 200, self.answer_body(step, body), {}
