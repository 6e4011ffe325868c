"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

It plays a *script* (see :mod:`tests.agents.scripted_server`): one step per ``POST /v1/messages``,
a canned message (built with :func:`reply`), an :class:`Error` (status code, error type, optional
``retry-after``), or a function of the request body that returns either. Every request is recorded
(path, headers, JSON body) so tests can assert what the backend sent: the system prompt's
cache_control, the tools, the tool_results that came back.

    with FakeAnthropic([reply(tool("view_lineage")), reply(text("done"))]) as api:
        backend = AnthropicBackend(api_key="test", base_url=api.base_url)
"""

from __future__ import annotations

from typing import Any

from tests.agents.scripted_server import Error, Recorded, ScriptedServer, Step

__all__ = ["Error", "FakeAnthropic", "Recorded", "Step", "api_key", "reply", "result_text", "text", "tool",
           "tool_results"]


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


def api_key(request: Recorded) -> str:
    """The key a request carried: ``x-api-key``, or ``Authorization: Bearer`` (newer SDKs)."""
    if request.headers.get("x-api-key"):
        return request.headers["x-api-key"]
    auth = request.headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""


class FakeAnthropic(ScriptedServer):
    """The Messages API server. ``base_url`` is ``http://127.0.0.1:PORT``."""

    route = "/v1/messages"

    def __enter__(self) -> FakeAnthropic:
        super().__enter__()
        return self

    def key_of(self, request: Recorded) -> str:
        return api_key(request)

    def error_body(self, error: Error) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error.type, "message": error.message}}

    def answer_body(self, step: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        content = []
        for block in step.get("content", []):
            block = dict(block)
            if block.get("type") == "tool_use" and not block.get("id"):
                block["id"] = f"toolu_fake_{self.next_id()}"
            content.append(block)
        return {
            "id": f"msg_fake_{self.next_id()}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "claude-fake"),
            "content": content,
            "stop_reason": step.get("stop_reason", "end_turn"),
            "stop_sequence": None,
            "usage": step.get("usage", {"input_tokens": 0, "output_tokens": 0}),
        }
