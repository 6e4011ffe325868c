"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

It plays a *script*: a list of steps, one per ``POST /v1/messages``. A step is a canned message
(built with :func:`reply`), an :class:`Error` (status code, error type, optional ``retry-after``),
or a function of the request body that returns either. Every request is recorded (path, headers,
JSON body) so tests can assert what the backend sent: the system prompt's cache_control, the
tools, the tool_results that came back.

    with FakeAnthropic([reply(tool("view_lineage")), reply(text("done"))]) as api:
        backend = AnthropicBackend(api_key="test", base_url=api.base_url)
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
    """An error response in the API's shape: ``{"type": "error", "error": {"type", "message"}}``."""

    status: int = 529
    type: str = "overloaded_error"
    message: str = "Overloaded"
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Step = dict[str, Any] | Error | Callable[[dict[str, Any]], "dict[str, Any] | Error"]


def text(s: str) -> dict[str, Any]:
    return {"type": "text", "text": s}


def tool(name: str, id: str | None = None, **input: Any) -> dict[str, Any]:
    """A tool_use block; the id is assigned when it is served if not given."""
    block: dict[str, Any] = {"type": "tool_use", "name": name, "input": input}
    if id:
        block["id"] = id
    return block


def reply(*content: dict[str, Any], stop_reason: str | None = None, input_tokens: int = 100,
          output_tokens: int = 20, cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    """A message. ``stop_reason`` defaults to ``tool_use`` when there is a tool_use block, else
    ``end_turn``."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(c.get("type") == "tool_use" for c in content) else "end_turn"
    return {
        "content": list(content),
        "stop_reason": stop_reason,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    }


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of the last user message of a request body."""
    msgs = body.get("messages") or []
    if not msgs or msgs[-1].get("role") != "user" or isinstance(msgs[-1].get("content"), str):
        return []
    return [c for c in msgs[-1]["content"] if c.get("type") == "tool_result"]


def result_text(body: dict[str, Any], index: int = -1) -> str:
    results = tool_results(body)
    if not results:
        return ""
    content = results[index].get("content")
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content)
    return content or ""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def api_key(request: Recorded) -> str:
    """The key a request carried: ``x-api-key``, or ``Authorization: Bearer`` (newer SDKs)."""
    if request.headers.get("x-api-key"):
        return request.headers["x-api-key"]
    auth = request.headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""


class FakeAnthropic:
    """The server. ``base_url`` is ``http://127.0.0.1:PORT``; ``requests`` lists what it got."""

    def __init__(self, steps: list[Step], *, require_key: bool = True):
        self.steps = list(steps)
        self.require_key = require_key
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
                    self._send(400, _error_body("invalid_request_error", "body is not JSON"))
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

    def __enter__(self) -> FakeAnthropic:
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
            if path.split("?")[0] != "/v1/messages":
                return 404, _error_body("not_found_error", f"no route {path}"), {}
            if self.require_key and not api_key(self.requests[-1]):
                return 401, _error_body("authentication_error", "an API key is required"), {}
            if not self.steps:
                return 400, _error_body("invalid_request_error", "fake server: the script is exhausted"), {}
            step = self.steps.pop(0)
            if callable(step) and not isinstance(step, Error):
                try:
                    step = step(body)
                except Exception as e:  # a failed assertion in a script step: keep it for the test
                    self.errors.append(e)
                    return 400, _error_body("invalid_request_error", f"fake server: script step raised {e!r}"), {}
            if isinstance(step, Error):
                headers_out = dict(step.headers)
                if step.retry_after is not None:
                    headers_out["retry-after"] = step.retry_after
                return step.status, _error_body(step.type, step.message), headers_out
            content = []
            for block in step.get("content", []):
                block = dict(block)
                if block.get("type") == "tool_use" and not block.get("id"):
                    block["id"] = f"toolu_fake_{next(self._ids)}"
                content.append(block)
            message = {
                "id": f"msg_fake_{next(self._ids)}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "claude-fake"),
                "content": content,
                "stop_reason": step.get("stop_reason", "end_turn"),
                "stop_sequence": None,
                "usage": step.get("usage", {"input_tokens": 0, "output_tokens": 0}),
            }
            return 200, message, {}


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
